//! The house has no circles: the modules of `supervisor` and `child-sdk` import one another in
//! layers, as read from their source, and each `lib.rs` names every module of its crate once in
//! its theory of operation.
//!
//! Run alone with `cargo test -p supervisor --test house`; a failure lists each circle with the
//! edges that make it and the first place each edge is written.
//!
//! # What counts as an edge
//! Every module is a graph of its children, each child standing for itself and everything below
//! it; at a crate's root, the graph of the top-level modules. A path written in one child that
//! names another child of the same module is an edge between the two: `use crate::…`,
//! `use super::…`, `use self::…`, a `use` of a child module by its bare name, and any
//! `crate::…`, `super::…` or `self::…` path in code (a type, a call, an attribute's argument).
//! An inline `mod NAME { … }` is a module like any other.
//!
//! Not edges: `mod` declarations, `pub(in …)` visibilities, comments and doc links, string
//! literals, a module naming itself or one of its ancestors (`super::Item` for the parent's own
//! item), and a module's own file naming its descendants: a module is the face of its children,
//! which it declares, re-exports and delegates to. A name that a module imports from one of its
//! descendants (`pub use child::Item`, or a private `use child::Item`) is that descendant's, so
//! a sibling's `super::Item` is an edge to the child that defines it. Test code (a module
//! declared `#[cfg(test)]`, and everything in it) is left out: a test may reach across layers to
//! check that they fit together, and nothing imports a test. Calls of methods defined in a
//! sibling's `impl` block name no path and are not seen.
//!
//! Every such graph must be acyclic: then each module's parts, and the crate's modules, can be
//! read from the bottom up, the plan below everything that reads it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "house/modules.rs"]
mod modules;
#[path = "house/tokens.rs"]
mod tokens;

use modules::{circles, read_crate};
use tokens::{attributes_before, cfg_of, ident, tokens, Tok};

// ---------------------------------------------------------------------------------------------
// The theory of operation.

/// The problems with `lib`'s theory of operation: a module of the crate it does not name, or
/// names more than once (as [`name`] or [`name::…`]).
fn theory_misses(lib: &str) -> Vec<String> {
    let doc: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .skip_while(|l| l.trim() != "# Theory of operation")
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("# "))
        .collect();
    let doc = doc.join("\n");
    let toks = tokens(lib);
    let mut out = Vec::new();
    let mut depth = 0;
    for (i, t) in toks.iter().enumerate() {
        match &t.tok {
            Tok::Punct('{') => depth += 1,
            Tok::Punct('}') => depth -= 1,
            Tok::Ident(w) if w == "mod" && depth == 0 => {
                let Some(m) = ident(toks.get(i + 1)) else {
                    continue;
                };
                if cfg_of(&attributes_before(&toks, i)).0 {
                    continue; // not in every build, so not linked
                }
                let n = doc.matches(&format!("[`{m}`]")).count()
                    + doc.matches(&format!("[`{m}::")).count();
                if n != 1 {
                    out.push(format!("`{m}` is named {n} times"));
                }
            }
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// The workspace's root directory.
fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Adds the `.rs` files under `dir` (relative to the workspace) to `files`.
fn read_dir(dir: &Path, files: &mut BTreeMap<PathBuf, String>) {
    for entry in std::fs::read_dir(workspace().join(dir)).expect("read the source directory") {
        let name = entry.expect("a directory entry").file_name();
        let path = dir.join(name);
        if workspace().join(&path).is_dir() {
            read_dir(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text =
                std::fs::read_to_string(workspace().join(&path)).expect("read a source file");
            files.insert(path, text);
        }
    }
}

/// The sources of the two crates, by path from the workspace's root.
fn sources() -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    read_dir(Path::new("supervisor/src"), &mut files);
    read_dir(Path::new("child-sdk/src"), &mut files);
    files
}

fn crate_roots() -> [PathBuf; 2] {
    [
        PathBuf::from("supervisor/src/lib.rs"),
        PathBuf::from("child-sdk/src/lib.rs"),
    ]
}

#[test]
fn no_module_is_in_a_circle() {
    let files = sources();
    let mut found = Vec::new();
    for root in crate_roots() {
        let krate = read_crate(&files, &root);
        let edges = krate.edges();
        // A reader that sees nothing finds no circle: it must see the crate's layers.
        assert!(
            edges.values().map(BTreeMap::len).sum::<usize>() >= 5,
            "{}: too few edges read: {edges:?}",
            root.display()
        );
        found.extend(circles(&edges));
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn each_lib_names_every_module_once_in_its_theory() {
    let files = sources();
    for root in crate_roots() {
        let misses = theory_misses(&files[&root]);
        assert!(
            misses.is_empty(),
            "{}'s theory of operation: {}",
            root.display(),
            misses.join(", ")
        );
    }
}

/// A crate of the given files (the first is its root).
fn circles_of(files: &[(&str, &str)]) -> Vec<String> {
    let map: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, s)| (PathBuf::from(p), (*s).to_owned()))
        .collect();
    circles(&read_crate(&map, Path::new(files[0].0)).edges())
}

#[test]
fn a_circle_between_top_level_modules_is_found() {
    let found = circles_of(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "use crate::b::B;\npub struct A;\n"),
        ("src/b.rs", "pub mod inner;\n"),
        ("src/b/inner.rs", "fn f() -> crate::a::A { crate::a::A }\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("a -> b: src/a.rs:1"), "{found:?}");
    assert!(
        found[0].contains("b -> a: src/b/inner.rs:1 (2 in all)"),
        "{found:?}"
    );
}

#[test]
fn a_circle_through_a_parents_re_export_is_found() {
    let found = circles_of(&[
        ("src/lib.rs", "mod w;\n"),
        (
            "src/w.rs",
            "mod run;\nmod verdict;\npub use run::Running;\nuse verdict::Verdict;\n",
        ),
        ("src/w/run.rs", "use super::Verdict;\npub struct Running;\n"),
        ("src/w/verdict.rs", "pub struct Verdict(super::Running);\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("a circle in `w` among run, verdict"),
        "{found:?}"
    );
}

#[test]
fn parents_children_comments_and_strings_make_no_circle() {
    let found = circles_of(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "src/a.rs",
            "mod low;\nmod high;\npub use low::L;\npub struct Item;\n\
             // crate::b::B\n/* crate::b::B /* nested */ crate::b::B */\n\
             const S: &str = \"crate::b::B\";\nconst R: &str = r#\"crate::b::\"B\"#;\n\
             const C: char = '\"';\nfn f<'a>(x: &'a str) -> &'a str { x }\n",
        ),
        ("src/a/low.rs", "pub struct L(super::Item);\n"),
        ("src/a/high.rs", "use super::L;\nuse super::low::L as M;\n"),
        (
            "src/b.rs",
            "use crate::a::{self, L};\npub struct B;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::a::Item;\n}\n",
        ),
    ]);
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn an_inline_module_is_a_node_of_its_file() {
    let found = circles_of(&[
        ("src/lib.rs", "mod m {\n    pub mod x {\n        use super::y::Y;\n        pub struct X;\n    }\n    pub mod y {\n        pub struct Y(super::x::X);\n    }\n}\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("a circle in `m` among x, y"), "{found:?}");
}

#[test]
fn the_theory_must_name_each_module_once() {
    let lib = "//! # Theory of operation\n//! The [`a::Thing`] and [`b`], [`b`] again.\n//!\n\
               //! # Caveats\n//! [`c`] only here.\npub mod a;\npub mod b;\npub mod c;\nmod d {}\n";
    assert_eq!(
        theory_misses(lib),
        [
            "`b` is named 2 times",
            "`c` is named 0 times",
            "`d` is named 0 times"
        ]
    );
}

#[test]
fn test_code_makes_no_edge() {
    let found = circles_of(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        (
            "src/a.rs",
            "pub struct A;\n#[cfg(test)]\npub(crate) mod tests {\n    use crate::b::B;\n}\n",
        ),
        (
            "src/b.rs",
            "use crate::a::A;\npub struct B;\n#[cfg(test)]\nmod tests;\n",
        ),
        ("src/b/tests.rs", "use crate::a::A;\n"),
    ]);
    assert!(found.is_empty(), "{found:?}");
    // The same edge outside a test module is one.
    let found = circles_of(&[
        ("src/lib.rs", "pub mod a;\npub mod b;\n"),
        ("src/a.rs", "pub struct A;\n#[cfg(feature = \"x\")]\npub(crate) mod more {\n    use crate::b::B;\n}\n"),
        ("src/b.rs", "use crate::a::A;\npub struct B;\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
}
