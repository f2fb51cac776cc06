//! The layers' one-way rule (STYLE.md, DESIGN.md §7): http → transport →
//! engine → hub. A file under `src/hub/` names no other layer; one under
//! `src/engine/` names neither the configuration, a transport nor HTTP; one
//! under `src/transport/` never names HTTP. This test reads every source file
//! and fails on the first import that runs the wrong way, naming the file and
//! the path, so a backwards dependency is caught when it is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Each folder (or file) under `src/` with the top-level modules it must not name.
const RULES: &[(&str, &[&str])] = &[
    (
        "hub",
        &[
            "engine",
            "transport",
            "http",
            "config",
            "demo",
            "error",
            "limits",
            "auth",
            "client",
            "bench",
        ],
    ),
    (
        "hooks",
        &["transport", "http", "config", "demo", "client", "bench"],
    ),
    (
        "engine",
        &[
            "config",
            "transport",
            "http",
            "demo",
            "error",
            "limits",
            "client",
            "bench",
        ],
    ),
    ("transport", &["http", "demo", "client", "bench"]),
    ("error.rs", &["http", "transport", "demo", "config"]),
    (
        "limits.rs",
        &["http", "transport", "engine", "demo", "config"],
    ),
    (
        "auth.rs",
        &["http", "transport", "engine", "demo", "config"],
    ),
    (
        "telemetry.rs",
        &["http", "transport", "engine", "demo", "config"],
    ),
    ("demo.rs", &["http"]),
];

/// The top-level modules a source text names through `crate::` paths,
/// including those inside `use crate::{a::b, c}` groups; comments are skipped.
fn crate_modules(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut named = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[at + "crate::".len()..];
        if preceded_by_ident {
            continue; // e.g. `mycrate::`, not our crate
        }
        if let Some(group) = rest.strip_prefix('{') {
            // Items at depth 0 of the group, each up to its first `::`.
            let mut depth = 0;
            let mut item = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        named.insert(first_segment(&item));
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 || c != '{' {
                    item.push(c);
                }
            }
            named.insert(first_segment(&item));
        } else {
            named.insert(first_segment(rest));
        }
    }
    named.remove("");
    named
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

fn rust_files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_owned()];
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).expect("source folder is readable") {
        let entry = entry.expect("source folder entry is readable").path();
        if entry.is_dir() {
            files.extend(rust_files(&entry));
        } else if entry.extension().is_some_and(|e| e == "rs") {
            files.push(entry);
        }
    }
    files
}

#[test]
fn imports_point_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut backwards = Vec::new();
    let mut checked = 0;
    for (place, forbidden) in RULES {
        let files = rust_files(&src.join(place));
        assert!(!files.is_empty(), "src/{place} has no Rust files");
        for file in files {
            checked += 1;
            let text = std::fs::read_to_string(&file).expect("source file is readable");
            for module in crate_modules(&text) {
                if forbidden.contains(&module.as_str()) {
                    backwards.push(format!(
                        "{} names crate::{module}",
                        file.strip_prefix(&src).unwrap_or(&file).display()
                    ));
                }
            }
        }
    }
    assert!(checked > 20, "only {checked} files checked");
    assert!(
        backwards.is_empty(),
        "imports that run against http → transport → engine → hub:\n  {}",
        backwards.join("\n  ")
    );
}

#[test]
fn the_scanner_sees_every_form_of_import() {
    let source = "use crate::http::ApiError;\n\
                  use crate::{config::ServerConfig, hub::{Draft, Message}};\n\
                  // use crate::demo;\n\
                  fn f() { crate::transport::publish(); mycrate::bench::run(); }\n";
    let named: Vec<String> = crate_modules(source).into_iter().collect();
    assert_eq!(named, ["config", "http", "hub", "transport"]);
}
