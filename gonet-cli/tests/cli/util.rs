//! A temp dir to run `gonet-cli` in, and the command with its checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temp dir, removed when dropped.
#[derive(Debug)]
pub(crate) struct Dir {
    tmp: tempfile::TempDir,
}

impl Dir {
    pub(crate) fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes `text` to `rel`, creating its directories.
    pub(crate) fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
    }

    /// The text of `rel`.
    pub(crate) fn read(&self, rel: &str) -> String {
        let path = self.path().join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// `gonet-cli ARGS` run in this dir.
    pub(crate) fn cli(&self, args: &[&str]) -> TestCommand {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gonet-cli"));
        cmd.args(args).current_dir(self.path());
        TestCommand { cmd }
    }
}

/// A command to run once, with what its run must show.
#[derive(Debug)]
pub(crate) struct TestCommand {
    cmd: Command,
}

impl TestCommand {
    fn output(&mut self) -> Output {
        self.cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", self.cmd))
    }

    /// Runs it, expects success and returns its stdout.
    pub(crate) fn stdout(&mut self) -> String {
        let out = self.output();
        assert!(
            out.status.success(),
            "{:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            self.cmd,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs it, expects exit status `code` with nothing on stdout, and returns its
    /// stderr.
    pub(crate) fn fails(&mut self, code: i32) -> String {
        let out = self.output();
        let stderr = String::from_utf8(out.stderr).expect("utf-8 stderr");
        assert_eq!(
            out.status.code(),
            Some(code),
            "{:?}\nstdout:\n{}\nstderr:\n{stderr}",
            self.cmd,
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }
}

/// The gonet workspace this test was built in: the one `gonet-cli` points projects at.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .canonicalize()
        .expect("workspace path")
}

/// The target directory the binary under test was built in.
pub(crate) fn target_dir() -> PathBuf {
    // CARGO_BIN_EXE_* is TARGET/PROFILE/gonet-cli.
    Path::new(env!("CARGO_BIN_EXE_gonet-cli"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}
