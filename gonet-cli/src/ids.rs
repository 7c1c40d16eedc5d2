//! `gonet-cli ids`: the id table of a set of `.proto` files, with the build's checks.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use gonet_build::{BuildError, Location, ProblemKind};

use crate::Failure;
use crate::args::{IdsArgs, IdsFormat};

/// The files to read and where imports resolve, checked to exist.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The `.proto` files, as found (for display) and absolute (for the parser).
    files: Vec<PathBuf>,
    /// The include directories, as given and absolute, in order.
    includes: Vec<(PathBuf, PathBuf)>,
}

pub(crate) fn run(args: IdsArgs) -> Result<(), Failure> {
    let plan = Plan::from_args(args.paths, args.includes)?;
    let (files, includes) = plan.absolute().map_err(Failure::Failed)?;
    match gonet_build::inspect(&files, &includes) {
        Ok(schema) => {
            let rows: Vec<(u32, String, String)> = schema
                .messages
                .iter()
                .filter_map(|m| Some((m.id?, m.full_name(), plan.show(&m.location))))
                .collect();
            match args.format {
                IdsFormat::Table => print!("{}", table(rows)),
                IdsFormat::Json => println!("{}", json(rows)),
            }
            Ok(())
        }
        Err(err) => {
            plan.report(&err);
            Err(Failure::Reported)
        }
    }
}

impl Plan {
    /// The files and include directories of `paths` and `-I` directories, checked.
    pub(crate) fn from_args(paths: Vec<PathBuf>, includes: Vec<PathBuf>) -> Result<Self, Failure> {
        let args_includes = includes;
        let paths = if paths.is_empty() {
            let schemas = PathBuf::from("schemas");
            vec![if schemas.is_dir() {
                schemas
            } else {
                PathBuf::from(".")
            }]
        } else {
            paths
        };
        let mut files = Vec::new();
        let mut default_includes = Vec::new();
        for path in &paths {
            if path.is_dir() {
                find_protos(path, &mut files).map_err(Failure::Failed)?;
                default_includes.push(path.clone());
            } else if path.is_file() {
                files.push(path.clone());
                let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
                default_includes.push(parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf));
            } else {
                return Err(Failure::usage(format!(
                    "{} is neither a .proto file nor a directory",
                    path.display()
                )));
            }
        }
        if files.is_empty() {
            let list: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(Failure::usage(format!(
                "no .proto files in {}: give the files or the directories that hold them",
                list.join(", ")
            )));
        }
        let includes = if args_includes.is_empty() {
            default_includes
        } else {
            args_includes
        };
        let mut seen = BTreeSet::new();
        let mut checked = Vec::new();
        for include in includes {
            if !include.is_dir() {
                return Err(Failure::usage(format!(
                    "include directory {} does not exist",
                    include.display()
                )));
            }
            let abs = absolute(&include).map_err(Failure::Failed)?;
            if seen.insert(abs.clone()) {
                checked.push((include, abs));
            }
        }
        let mut seen = BTreeSet::new();
        files.retain(|f| seen.insert(absolute(f).unwrap_or_else(|_| f.clone())));
        Ok(Self {
            files,
            includes: checked,
        })
    }

    /// The files and the include directories, absolute, for the parser.
    pub(crate) fn absolute(&self) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
        let files = self
            .files
            .iter()
            .map(|f| absolute(f))
            .collect::<anyhow::Result<_>>()?;
        let includes = self.includes.iter().map(|(_, abs)| abs.clone()).collect();
        Ok((files, includes))
    }

    /// Prints every problem to stderr, its location as a path the user can open.
    pub(crate) fn report(&self, err: &BuildError) {
        report(self, err);
    }

    /// A location with its file as a path the user can open.
    fn show(&self, location: &Location) -> String {
        Location::new(self.show_file(&location.file), location.line).to_string()
    }

    /// An import name as a path the user can open: the include directory it was found
    /// in, joined to the name.
    fn show_file(&self, file: &str) -> String {
        self.includes
            .iter()
            .find(|(_, abs)| abs.join(file).is_file())
            .map_or_else(
                || file.to_owned(),
                |(given, _)| display_path(&given.join(file)),
            )
    }
}

/// Every `.proto` file under `dir`, sorted, skipping hidden directories and `target`.
fn find_protos(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if !name.starts_with('.') && name != "target" {
                find_protos(&path, out)?;
            }
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    path.canonicalize()
        .with_context(|| format!("cannot resolve {}", path.display()))
}

/// `path` without a leading `./`.
fn display_path(path: &Path) -> String {
    let mut components = path.components().peekable();
    while components.peek() == Some(&Component::CurDir) {
        components.next();
    }
    components.collect::<PathBuf>().display().to_string()
}

/// The table, sorted by id: a header, then one line per message.
fn table(mut rows: Vec<(u32, String, String)>) -> String {
    rows.sort();
    let id_width = rows
        .iter()
        .map(|(id, _, _)| id.to_string().len())
        .max()
        .unwrap_or(0)
        .max("id".len());
    let name_width = rows
        .iter()
        .map(|(_, name, _)| name.len())
        .max()
        .unwrap_or(0)
        .max("message".len());
    let mut out = format!(
        "{:>id_width$}  {:<name_width$}  location\n",
        "id", "message"
    );
    for (id, name, location) in rows {
        out.push_str(&format!(
            "{id:>id_width$}  {name:<name_width$}  {location}\n"
        ));
    }
    out
}

/// The table as a JSON array sorted by id: `{"id": 101, "name": "chat.Say",
/// "location": "schemas/chat.proto:5"}` per message.
fn json(mut rows: Vec<(u32, String, String)>) -> String {
    rows.sort();
    let rows: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|(id, name, location)| serde_json::json!({ "id": id, "name": name, "location": location }))
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_default()
}

/// Prints every problem to stderr, its location as a path the user can open.
fn report(plan: &Plan, err: &BuildError) {
    for problem in err.problems() {
        let mut problem = problem.clone();
        if let Some(location) = &mut problem.location {
            location.file = plan.show_file(&location.file);
        }
        if let ProblemKind::DuplicateId { other_location, .. } = &mut problem.kind {
            other_location.file = plan.show_file(&other_location.file);
        }
        eprintln!("{problem}");
    }
    let n = err.problems().len();
    eprintln!(
        "error: {n} problem{} in the schemas",
        if n == 1 { "" } else { "s" }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_by_id_and_aligned() {
        let rows = vec![
            (1002, "game.Welcome".to_owned(), "game.proto:9".to_owned()),
            (7, "game.A".to_owned(), "a.proto:3".to_owned()),
        ];
        assert_eq!(
            table(rows),
            "  id  message       location\n   7  game.A        a.proto:3\n1002  game.Welcome  game.proto:9\n"
        );
    }

    #[test]
    fn the_json_table_is_an_array_sorted_by_id() {
        let rows = vec![
            (1002, "game.Welcome".to_owned(), "game.proto:9".to_owned()),
            (7, "game.\"A\"".to_owned(), "a.proto:3".to_owned()),
        ];
        let parsed: serde_json::Value = serde_json::from_str(&json(rows)).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                { "id": 7, "name": "game.\"A\"", "location": "a.proto:3" },
                { "id": 1002, "name": "game.Welcome", "location": "game.proto:9" },
            ])
        );
    }

    #[test]
    fn leading_dots_are_dropped_from_paths() {
        assert_eq!(display_path(Path::new("./a/b.proto")), "a/b.proto");
        assert_eq!(display_path(Path::new("a/./b.proto")), "a/b.proto");
    }
}
