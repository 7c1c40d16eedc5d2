//! The layering of `gonet/src` that the crate docs' "Layout" section describes, checked
//! against the source: each top-level module (a folder or a file) may import only the
//! modules listed for it, so no change can quietly close an import loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its code may import. `builder` may use
/// everything and is not listed; no other module may import it.
const ALLOWED: &[(&str, &[&str])] = &[
    ("codec", &["telemetry"]),
    ("wire", &["codec"]),
    (
        "session",
        &["wire", "codec", "url", "settings", "telemetry"],
    ),
    ("service", &["session", "wire", "codec", "telemetry"]),
    (
        "driver",
        &[
            "service",
            "session",
            "wire",
            "codec",
            "settings",
            "telemetry",
            "otel",
        ],
    ),
    (
        "transport",
        &[
            "driver",
            "session",
            "wire",
            "codec",
            "url",
            "settings",
            "telemetry",
        ],
    ),
    ("settings", &["service", "session", "wire", "codec", "url"]),
    ("url", &[]),
    ("telemetry", &["url"]),
    ("shutdown", &[]),
    ("otel", &["wire"]),
];

/// The top-level modules named after `crate::` in the code of `text`: comments, macro
/// bodies (`$crate::`) and the test module at the end of a file are left out.
fn imports(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let line = line.trim();
        let test_attr = line.starts_with("#[cfg(test)]") || line.starts_with("#[cfg(all(test");
        if test_attr
            && lines
                .peek()
                .is_some_and(|next| next.trim_start().starts_with("mod "))
        {
            break;
        }
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + "crate::".len()..];
            if !before.is_some_and(|c| c == '$' || c == '_' || c.is_alphanumeric()) {
                let name: String = after
                    .chars()
                    .take_while(|c| *c == '_' || c.is_ascii_lowercase())
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
            rest = after;
        }
    }
    found
}

/// Every `.rs` file under `dir` with its text.
fn sources(dir: &Path, out: &mut Vec<(std::path::PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("source folder readable") {
        let path = entry.expect("source entry readable").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("source file readable");
            out.push((path, text));
        }
    }
}

#[test]
fn each_module_imports_only_the_modules_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &mut files);
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (path, text) in &files {
        let rel = path.strip_prefix(&root).expect("under src");
        let first = rel.components().next().expect("a path");
        let module = first.as_os_str().to_string_lossy();
        let module = module.trim_end_matches(".rs");
        if module == "layout" {
            continue;
        }
        for import in imports(text) {
            if import == module {
                continue;
            }
            let ok = match allowed.get(module) {
                Some(may) => may.contains(&import.as_str()),
                // `builder`, and the crate root's `lib.rs` and `fuzz.rs`.
                None => import != "builder" || module == "lib",
            };
            if !ok {
                wrong.push(format!("{} imports crate::{import}", rel.display()));
            }
        }
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_import_scan_sees_code_and_skips_comments_macros_and_tests() {
    let text = "use crate::wire::Wrap;\n\
                // crate::transport in a comment\n\
                let x = $crate::codegen::Bytes;\n\
                let y = gonet_crate::z;\n\
                let s = crate::session::Session::new();\n\
                #[cfg(test)]\n\
                mod tests {\n\
                    use crate::builder::Builder;\n\
                }\n";
    let found: Vec<_> = imports(text).into_iter().collect();
    assert_eq!(found, ["session", "wire"]);
}
