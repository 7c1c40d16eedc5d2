//! Project names: what cargo, Rust, protobuf and the generated code all accept.

use std::fmt;

/// A valid project name: the package name, and (with `-` as `_`) the library crate and
/// the proto package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProjectName {
    name: String,
}

/// Why a name was refused; the message says what would do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NameError {
    name: String,
    why: String,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid project name {:?}: {}; choose another NAME (for example mygame)",
            self.name, self.why
        )
    }
}

impl std::error::Error for NameError {}

/// Rust keywords, strict and reserved: none can be a crate name.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Names that would clash with something, and with what.
const RESERVED: &[(&str, &str)] = &[
    ("test", "the name of Rust's test crate"),
    ("std", "the name of Rust's standard library"),
    ("core", "the name of Rust's core library"),
    ("alloc", "the name of Rust's alloc library"),
    ("proc_macro", "the name of Rust's proc_macro library"),
    ("build", "the name of a directory cargo uses in target/"),
    ("deps", "the name of a directory cargo uses in target/"),
    ("examples", "the name of a directory cargo uses in target/"),
    (
        "incremental",
        "the name of a directory cargo uses in target/",
    ),
    ("gonet", "the name of a crate the project depends on"),
    ("gonet_build", "the name of a crate the project depends on"),
    ("gonet_cli", "the name of this tool"),
    ("tokio", "the name of a crate the project depends on"),
    ("prost", "the name of a crate the generated code uses"),
    ("serde", "the name of a crate the generated code uses"),
    ("google", "the proto package of the well-known types"),
    ("server", "the name of the project's server binary"),
    ("client", "the name of the project's client binary"),
];

/// File names Windows refuses, whatever the extension.
const WINDOWS_DEVICES: &[&str] = &["con", "prn", "aux", "nul"];

impl ProjectName {
    /// Checks `name`: a lower-case ASCII letter first, then lower-case letters, digits,
    /// `_` or `-`; not a Rust keyword nor a name that clashes with a crate, a binary or
    /// a directory of the build.
    pub(crate) fn parse(name: &str) -> Result<Self, NameError> {
        let refuse = |why: &str| NameError {
            name: name.to_owned(),
            why: why.to_owned(),
        };
        let Some(first) = name.chars().next() else {
            return Err(refuse("it is empty"));
        };
        if !first.is_ascii_lowercase() {
            return Err(refuse("it must start with a lower-case letter (a-z)"));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-'))
        {
            return Err(refuse(&format!(
                "{bad:?} is not allowed: only lower-case letters, digits, `_` and `-`"
            )));
        }
        if name.len() > 64 {
            return Err(refuse("it is longer than 64 characters"));
        }
        let ident = name.replace('-', "_");
        if KEYWORDS.contains(&ident.as_str()) {
            return Err(refuse("it is a Rust keyword"));
        }
        if let Some((_, why)) = RESERVED.iter().find(|(n, _)| *n == ident) {
            return Err(refuse(&format!("it is reserved: {why}")));
        }
        let device = ident.trim_end_matches(|c: char| c.is_ascii_digit());
        if WINDOWS_DEVICES.contains(&ident.as_str())
            || (matches!(device, "com" | "lpt") && ident.len() == 4 && !ident.ends_with('0'))
        {
            return Err(refuse("it is a device name on Windows"));
        }
        Ok(Self {
            name: name.to_owned(),
        })
    }

    /// The package name, as given.
    pub(crate) fn as_str(&self) -> &str {
        &self.name
    }

    /// The library crate's name and the proto package: `-` becomes `_`.
    pub(crate) fn ident(&self) -> String {
        self.name.replace('-', "_")
    }
}

#[cfg(test)]
mod tests {
    use super::ProjectName;

    fn why(name: &str) -> String {
        ProjectName::parse(name).expect_err(name).to_string()
    }

    #[test]
    fn good_names_pass_and_give_an_identifier() {
        for name in [
            "mygame",
            "chat-server",
            "a",
            "game_2",
            "tests",
            "com0",
            "com10",
        ] {
            assert_eq!(ProjectName::parse(name).expect(name).as_str(), name);
        }
        let name = ProjectName::parse("chat-server").expect("valid");
        assert_eq!(name.ident(), "chat_server");
    }

    #[test]
    fn bad_names_say_why() {
        assert!(why("").contains("it is empty"));
        assert!(why("1game").contains("must start with a lower-case letter"));
        assert!(why("_game").contains("must start with a lower-case letter"));
        assert!(why("MyGame").contains("must start with a lower-case letter"));
        assert!(why("myGame").contains("'G' is not allowed"));
        assert!(why("my.game").contains("'.' is not allowed"));
        assert!(why("my game").contains("' ' is not allowed"));
        assert!(why(&"a".repeat(65)).contains("longer than 64"));
        assert!(why("fn").contains("a Rust keyword"));
        assert!(why("async").contains("a Rust keyword"));
        assert!(why("test").contains("reserved: the name of Rust's test crate"));
        assert!(why("proc-macro").contains("reserved"));
        assert!(why("gonet-build").contains("reserved"));
        assert!(why("server").contains("the project's server binary"));
        assert!(why("nul").contains("device name"));
        assert!(why("lpt1").contains("device name"));
        assert_eq!(
            why("std"),
            "invalid project name \"std\": it is reserved: the name of Rust's standard library; choose another NAME (for example mygame)"
        );
    }
}
