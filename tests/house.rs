//! The house rules a reader relies on, checked on the tree itself: DESIGN.md
//! names every source file (its layout is the table of contents), and no
//! source file outgrows what a reader can hold (800 lines; tests of a large
//! module go to a sibling `tests.rs`).

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn design_names_every_source_file() {
    let design = std::fs::read_to_string(root().join("DESIGN.md")).unwrap();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let missing: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let stem = f.file_stem()?.to_str()?;
            if matches!(stem, "mod" | "lib" | "main") {
                return None;
            }
            // A whole word, as the layout names it (`history.rs` or `history`).
            let named = design.match_indices(stem).any(|(i, _)| {
                let before = design[..i].chars().next_back();
                let after = design[i + stem.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            });
            (!named).then(|| f.strip_prefix(root()).unwrap().display().to_string())
        })
        .collect();
    assert!(
        missing.is_empty(),
        "DESIGN.md's source layout does not name: {missing:?}"
    );
}

#[test]
fn no_source_file_is_longer_than_a_reader_can_hold() {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("scripts"), &mut files);
    let long: Vec<String> = files
        .iter()
        .filter(|f| !f.components().any(|c| c.as_os_str() == "target"))
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).ok()?.lines().count();
            (n > 800).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "over 800 lines: {long:?}");
}
