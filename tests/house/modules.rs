//! A crate's modules read from its source: the files its `mod NAME;` declarations name, the
//! paths each module's `use` trees and code name, and the graph of each module's children.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::tokens::{attributes_before, cfg_of, ident, is, tokens, Tok, Token};

/// One path named in code or imported: its segments as written, where, and the name it brings
/// into scope (`None` for a path in code or a glob import).
#[derive(Debug, Clone)]
pub struct Reference {
    module: Vec<String>,
    segs: Vec<String>,
    file: String,
    line: usize,
    imports: Option<String>,
}

#[derive(Debug, Default)]
pub struct Crate {
    /// Every module's path (the root is empty) and its children's names.
    children: BTreeMap<Vec<String>, BTreeSet<String>>,
    /// The modules declared `#[cfg(test)]`.
    tests: BTreeSet<Vec<String>>,
    refs: Vec<Reference>,
}

/// Parses one use tree at `i` under `prefix`; pushes (segments, name brought in) and returns the
/// index after the tree.
fn use_tree(
    toks: &[Token],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) -> usize {
    let mut segs = prefix.to_vec();
    if is(toks.get(i), &Tok::Colons) {
        i += 1;
    }
    loop {
        match toks.get(i).map(|t| &t.tok) {
            Some(Tok::Ident(s)) => {
                segs.push(s.clone());
                i += 1;
                if is(toks.get(i), &Tok::Colons) {
                    i += 1;
                    continue;
                }
                let mut name = segs.last().cloned();
                if ident(toks.get(i)) == Some("as") {
                    name = ident(toks.get(i + 1)).map(str::to_owned);
                    i += 2;
                }
                if segs.last().map(String::as_str) == Some("self") {
                    segs.pop();
                    if name.as_deref() == Some("self") {
                        name = segs.last().cloned();
                    }
                }
                out.push((segs, name));
                return i;
            }
            Some(Tok::Punct('*')) => {
                out.push((segs, None));
                return i + 1;
            }
            Some(Tok::Punct('{')) => {
                i += 1;
                while !is(toks.get(i), &Tok::Punct('}')) && i < toks.len() {
                    i = use_tree(toks, i, &segs, out);
                    if is(toks.get(i), &Tok::Punct(',')) {
                        i += 1;
                    }
                }
                return i + 1;
            }
            _ => return i + 1,
        }
    }
}

/// Reads the crate whose root is `root` (a path in `files`), following `mod NAME;` declarations.
pub fn read_crate(files: &BTreeMap<PathBuf, String>, root: &Path) -> Crate {
    let mut krate = Crate::default();
    // (file, its module, the directory its child files are in)
    let dir = root.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut todo = vec![(root.to_path_buf(), Vec::<String>::new(), dir)];
    while let Some((file, module, dir)) = todo.pop() {
        let Some(src) = files.get(&file) else {
            panic!("{} is declared but not found", file.display());
        };
        krate.children.entry(module.clone()).or_default();
        let toks = tokens(src);
        let name = file.display().to_string();
        // The inline module each `{` opened, if any: (its depth, its path, its directory).
        let mut stack: Vec<(usize, Vec<String>, PathBuf)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < toks.len() {
            let (here, here_dir) = stack.last().map_or((&module, &dir), |(_, m, d)| (m, d));
            let (here, here_dir) = (here.clone(), here_dir.clone());
            match &toks[i].tok {
                Tok::Punct('{') => {
                    depth += 1;
                    i += 1;
                }
                Tok::Punct('}') => {
                    if stack.last().is_some_and(|(d, _, _)| *d == depth) {
                        stack.pop();
                    }
                    depth = depth.saturating_sub(1);
                    i += 1;
                }
                Tok::Punct('$') => i += 2, // `$crate` in a macro
                Tok::Ident(w) if w == "mod" => {
                    let Some(child) = ident(toks.get(i + 1)).map(str::to_owned) else {
                        i += 1;
                        continue;
                    };
                    let mut path = here.clone();
                    path.push(child.clone());
                    if cfg_of(&attributes_before(&toks, i)).1 {
                        krate.tests.insert(path.clone());
                    }
                    krate
                        .children
                        .entry(here.clone())
                        .or_default()
                        .insert(child.clone());
                    krate.children.entry(path.clone()).or_default();
                    if is(toks.get(i + 2), &Tok::Punct(';')) {
                        let flat = here_dir.join(format!("{child}.rs"));
                        let (file, sub) = if files.contains_key(&flat) {
                            (flat, here_dir.join(&child))
                        } else {
                            (here_dir.join(&child).join("mod.rs"), here_dir.join(&child))
                        };
                        todo.push((file, path, sub));
                        i += 3;
                    } else {
                        depth += 1;
                        stack.push((depth, path, here_dir.join(&child)));
                        i += 3;
                    }
                }
                Tok::Ident(w) if w == "pub" && is(toks.get(i + 1), &Tok::Punct('(')) => {
                    while i < toks.len() && !is(toks.get(i), &Tok::Punct(')')) {
                        i += 1;
                    }
                    i += 1;
                }
                Tok::Ident(w) if w == "use" => {
                    let mut trees = Vec::new();
                    let line = toks[i].line;
                    i = use_tree(&toks, i + 1, &[], &mut trees);
                    for (segs, imports) in trees {
                        krate.refs.push(Reference {
                            module: here.clone(),
                            segs,
                            file: name.clone(),
                            line,
                            imports,
                        });
                    }
                }
                Tok::Ident(w)
                    if matches!(w.as_str(), "crate" | "super" | "self")
                        && is(toks.get(i + 1), &Tok::Colons) =>
                {
                    let line = toks[i].line;
                    let mut segs = vec![w.clone()];
                    i += 1;
                    while is(toks.get(i), &Tok::Colons) {
                        match ident(toks.get(i + 1)) {
                            Some(s) => {
                                segs.push(s.to_owned());
                                i += 2;
                            }
                            None => break,
                        }
                    }
                    krate.refs.push(Reference {
                        module: here,
                        segs,
                        file: name.clone(),
                        line,
                        imports: None,
                    });
                }
                _ => i += 1,
            }
        }
    }
    krate
}

// ---------------------------------------------------------------------------------------------
// The graphs.

/// An edge between two children of `within`, with where it was first seen.
pub type Edges = BTreeMap<Vec<String>, BTreeMap<(String, String), (String, usize, usize)>>;

impl Crate {
    /// The absolute path `segs` (as written in `module`) names, or `None` outside the crate.
    pub fn anchor(&self, module: &[String], segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?;
        let mut base: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" | "super" => module.to_vec(),
            s if self.children.get(module).is_some_and(|c| c.contains(s)) => {
                return Some(module.iter().chain(segs).cloned().collect());
            }
            _ => return None,
        };
        let mut rest = &segs[1..];
        if first == "super" {
            base.pop()?;
        }
        while rest.first().map(String::as_str) == Some("super") {
            base.pop()?;
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The module an absolute path ends in: as deep as its segments name modules, then, for an
    /// item a module imports from one of its descendants, that descendant.
    pub fn resolve(
        &self,
        path: &[String],
        imports: &HashMap<Vec<String>, Vec<String>>,
        hops: u32,
    ) -> Vec<String> {
        let mut here: Vec<String> = Vec::new();
        for seg in path {
            if self.children.get(&here).is_some_and(|c| c.contains(seg)) {
                here.push(seg.clone());
                continue;
            }
            let mut key = here.clone();
            key.push(seg.clone());
            if let Some(from) = imports.get(&key) {
                if hops < 8 {
                    let there = self.resolve(from, imports, hops + 1);
                    if there.len() > here.len() && there.starts_with(&here) {
                        return there;
                    }
                }
            }
            break;
        }
        here
    }

    /// Every module's graph of its children.
    pub fn edges(&self) -> Edges {
        // What each module's names stand for: (module + name) -> absolute path.
        let mut imports = HashMap::new();
        for r in &self.refs {
            if let (Some(name), Some(abs)) = (&r.imports, self.anchor(&r.module, &r.segs)) {
                let mut key = r.module.clone();
                key.push(name.clone());
                imports.insert(key, abs);
            }
        }
        let mut edges = Edges::new();
        for r in &self.refs {
            if (1..=r.module.len()).any(|n| self.tests.contains(&r.module[..n])) {
                continue; // test code
            }
            let Some(abs) = self.anchor(&r.module, &r.segs) else {
                continue;
            };
            let target = self.resolve(&abs, &imports, 0);
            let common = r
                .module
                .iter()
                .zip(&target)
                .take_while(|(a, b)| a == b)
                .count();
            if common == target.len() || common == r.module.len() {
                continue; // itself or an ancestor; or its own descendant
            }
            let entry = edges
                .entry(r.module[..common].to_vec())
                .or_default()
                .entry((r.module[common].clone(), target[common].clone()))
                .or_insert((r.file.clone(), r.line, 0));
            entry.2 += 1;
        }
        edges
    }
}

/// The circles of every graph, described: for each group of children that reach one another,
/// the edges between them.
pub fn circles(edges: &Edges) -> Vec<String> {
    let mut found = Vec::new();
    for (within, graph) in edges {
        let nodes: BTreeSet<&String> = graph.keys().flat_map(|(a, b)| [a, b]).collect();
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut todo = vec![from];
            while let Some(n) = todo.pop() {
                for ((a, b), _) in graph.range((n.clone(), String::new())..) {
                    if a != n {
                        break;
                    }
                    if seen.insert(b) {
                        todo.push(b);
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&String, BTreeSet<&String>> =
            nodes.iter().map(|n| (*n, reach(n))).collect();
        let mut done = BTreeSet::new();
        for n in &nodes {
            if done.contains(n) || !reaches[n].contains(n) {
                continue;
            }
            let group: BTreeSet<&String> = reaches[n]
                .iter()
                .filter(|m| reaches[*m].contains(n))
                .copied()
                .collect();
            done.extend(group.iter().copied());
            let name = if within.is_empty() {
                "the crate".to_owned()
            } else {
                format!("`{}`", within.join("::"))
            };
            let mut text = format!(
                "a circle in {name} among {}:",
                group
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for ((a, b), (file, line, count)) in graph {
                if group.contains(a) && group.contains(b) {
                    let _ = write!(text, "\n    {a} -> {b}: {file}:{line} ({count} in all)");
                }
            }
            found.push(text);
        }
    }
    found
}
