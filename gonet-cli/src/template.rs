//! The files of a new project: readable templates under `templates/`, with `{{key}}`
//! placeholders filled by [`render`].

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

#[cfg(test)]
mod tests {
    use super::*;

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
            "client_tls",
            "transport_note",
            "gonet_source",
        ];
        let values: Vec<(&str, &str)> = known.iter().map(|k| (*k, "")).collect();
        for file in FILES {
            let text = render(file.text, &values);
            assert!(!text.contains("{{"), "{}: {text}", file.path);
        }
    }
}
