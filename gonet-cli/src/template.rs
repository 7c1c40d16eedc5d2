//! The files of a new project: readable templates under `templates/`, with `{{key}}`
//! placeholders filled by [`render`], and sections kept or dropped by [`sections`].

/// A file of the project: where it goes, and its template.
#[derive(Debug)]
pub(crate) struct Template {
    /// The path in the project; `{{name}}` in it is replaced too.
    pub(crate) path: &'static str,
    /// The text.
    pub(crate) text: &'static str,
}

macro_rules! template {
    ($path:literal, $file:literal) => {
        Template {
            path: $path,
            text: include_str!(concat!("../templates/", $file)),
        }
    };
}

/// Every file of a project.
pub(crate) const FILES: &[Template] = &[
    template!("Cargo.toml", "Cargo.toml.tmpl"),
    template!("build.rs", "build.rs.tmpl"),
    template!("schemas/{{name}}.proto", "schemas/schema.proto.tmpl"),
    template!("src/lib.rs", "src/lib.rs.tmpl"),
    template!("src/bin/server.rs", "src/bin/server.rs.tmpl"),
    template!("src/bin/client.rs", "src/bin/client.rs.tmpl"),
    template!("tests/round_trip.rs", "tests/round_trip.rs.tmpl"),
    template!("README.md", "README.md.tmpl"),
    template!(".gitignore", "gitignore.tmpl"),
];

/// Replaces each `{{key}}` of `text` with its value. A placeholder without a value is a
/// bug in the templates, caught by the tests: it is left as it is.
pub(crate) fn render(text: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let value = after.find("}}").and_then(|end| {
            let key = &after[..end];
            values
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v, end + 2))
        });
        match value {
            Some((value, used)) => {
                out.push_str(value);
                rest = &after[used..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Keeps or drops the sections of `text`: the lines between a line `{{#flag}}` and a
/// line `{{/flag}}` are kept when `flag` is on, the lines between `{{^flag}}` and
/// `{{/flag}}` when it is off. The marker lines themselves go. A flag not listed is off;
/// sections do not nest.
pub(crate) fn sections(text: &str, on: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut keep = true;
    for line in text.split_inclusive('\n') {
        let marker = line.trim();
        let open = marker
            .strip_prefix("{{")
            .and_then(|m| m.strip_suffix("}}"))
            .filter(|m| m.starts_with(['#', '^', '/']));
        match open.map(|m| m.split_at(1)) {
            Some(("#", flag)) => keep = on.contains(&flag),
            Some(("^", flag)) => keep = !on.contains(&flag),
            Some(_) => keep = true,
            None if keep => out.push_str(line),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_kept_or_dropped_with_their_markers() {
        let text = "a\n{{#tls}}\n  b\n{{/tls}}\n{{^tls}}\nc\n{{/tls}}\nd {{#tls}}\n";
        assert_eq!(sections(text, &["tls"]), "a\n  b\nd {{#tls}}\n");
        assert_eq!(sections(text, &[]), "a\nc\nd {{#tls}}\n");
        assert_eq!(sections(text, &["other"]), "a\nc\nd {{#tls}}\n");
    }

    #[test]
    fn placeholders_are_replaced_and_unknown_ones_kept() {
        let values = [("name", "mygame"), ("empty", "")];
        assert_eq!(render("a {{name}} b{{empty}}c", &values), "a mygame bc");
        assert_eq!(render("{{other}} {{name", &values), "{{other}} {{name");
        assert_eq!(render("{{name}}{{name}}", &values), "mygamemygame");
    }

    #[test]
    fn every_template_uses_only_known_placeholders() {
        let known = [
            "name",
            "crate",
            "package",
            "transport",
            "codec",
            "Codec",
            "url",
            "test_url",
            "gonet_dep",
            "gonet_build_dep",
            "transport_note",
            "gonet_source",
        ];
        let values: Vec<(&str, &str)> = known.iter().map(|k| (*k, "")).collect();
        for flags in [&[][..], &["tls"]] {
            for file in FILES {
                let text = render(&sections(file.text, flags), &values);
                assert!(!text.contains("{{"), "{} {flags:?}: {text}", file.path);
            }
        }
    }
}
