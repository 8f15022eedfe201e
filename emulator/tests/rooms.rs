//! The emulator's rooms and their one-way doors, held by reading its source.
//!
//! `src/idp/` is HelseID, `src/apis/` the NHN APIs it protects, `src/server/` what they
//! share (state, the listener, answers, faults). This test builds the file-level import
//! graph of `src/` (file A → file B when A names a `crate::`, `super::` or `self::` path,
//! or a path through a child module it declares, that resolves into B) and checks:
//!
//! - no file under `src/idp/` reaches into `apis` (the IdP imports nothing from the APIs
//!   it protects; the APIs may use what the IdP publishes);
//! - no import loop holds more than two files, and every two-file loop is a pair listed in
//!   [`ONE_CONCEPT_PAIRS`] with the reason the two are one concept.
//!
//! Comments (doc comments and their intra-doc links included) and string literals are
//! not read. `ROOMS_SRC` points the test at another source tree (to try it on an older
//! layout: `git archive <commit> emulator/src | tar -x -C /tmp/old`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The two-file loops allowed, because the pair is one concept (each file of a pair
/// needs the other's items and neither reads without the other).
const ONE_CONCEPT_PAIRS: &[(&str, &str, &str)] = &[];

/// A source file: its path under `src/`, its module path, its code without comments or
/// string literals.
struct File {
    rel: String,
    module: Vec<String>,
    code: String,
}

#[test]
fn idp_imports_nothing_from_apis_and_no_loop_holds_more_than_two_files() {
    let src = std::env::var_os("ROOMS_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let files = read_tree(&src);
    assert!(
        files.iter().any(|f| f.rel == "lib.rs"),
        "no lib.rs under {}",
        src.display()
    );
    let graph = Graph::build(&files);
    if std::env::var_os("ROOMS_DUMP").is_some() {
        for (from, to) in &graph.edges {
            eprintln!("{from} -> {to:?}");
        }
    }

    let mut failures = Vec::new();
    for (from, path) in &graph.into_apis {
        if from.starts_with("idp/") {
            failures.push(format!(
                "{from} reaches into the APIs: `{}` (the IdP imports nothing from apis/)",
                path.join("::")
            ));
        }
    }
    for component in graph.components() {
        match component.len() {
            0 | 1 => {}
            2 => {
                let (a, b) = (&component[0], &component[1]);
                let allowed = ONE_CONCEPT_PAIRS
                    .iter()
                    .any(|(x, y, _)| (x == a && y == b) || (x == b && y == a));
                if !allowed {
                    failures.push(format!(
                        "import loop of two files that is not a listed one-concept pair: {}",
                        graph.cycle(&component)
                    ));
                }
            }
            n => failures.push(format!(
                "import loop of {n} files {:?}; one cycle: {}",
                component,
                graph.cycle(&component)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "the emulator's rooms:\n  {}",
        failures.join("\n  ")
    );
}

/// Reads every `.rs` file under `src`.
fn read_tree(src: &Path) -> Vec<File> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .map(|entry| entry.expect("directory entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let rel = path
                    .strip_prefix(src)
                    .expect("under src")
                    .to_string_lossy()
                    .replace('\\', "/");
                let text = fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                files.push(File {
                    module: module_of(&rel),
                    code: strip(&text),
                    rel,
                });
            }
        }
    }
    files
}

/// The module path of a file: `lib.rs` is the crate root, `a/mod.rs` and `a.rs` are
/// `a`, `a/b.rs` is `a::b`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (stem == "lib" && parts.is_empty())) {
        parts.push(stem.to_owned());
    }
    parts
}

/// The code without comments, string literals and character literals (each replaced by
/// a space), so that only code is read.
fn strip(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            out.push(' ');
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if (c == 'r' || c == 'b')
            && !chars
                .get(i.wrapping_sub(1))
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
            && raw_string_start(&chars, i).is_some()
        {
            let (hashes, body) = raw_string_start(&chars, i).expect("checked");
            i = body;
            loop {
                if i >= chars.len() {
                    break;
                }
                if chars[i] == '"' && (0..hashes).all(|k| chars.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
            out.push(' ');
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if c == '\'' {
            // A character literal ('x', '\n', '\u{..}'), or a lifetime ('a), left as is.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push(' ');
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push(' ');
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Where a raw string literal (`r"`, `r#"`, `br"`, ...) starting at `i` has its body:
/// the number of `#` and the index after the opening quote.
fn raw_string_start(chars: &[char], i: usize) -> Option<(usize, usize)> {
    let mut j = i;
    if chars[j] == 'b' {
        j += 1;
    }
    if chars.get(j) != Some(&'r') {
        return None;
    }
    j += 1;
    let mut hashes = 0;
    while chars.get(j) == Some(&'#') {
        hashes += 1;
        j += 1;
    }
    (chars.get(j) == Some(&'"')).then_some((hashes, j + 1))
}

/// A token of the code: an identifier, `::`, or one other character.
#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    PathSep,
    Punct(char),
}

fn tokens(code: &str) -> Vec<Token> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token::Ident(chars[start..i].iter().collect()));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push(Token::PathSep);
            i += 2;
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// The file-level import graph.
struct Graph {
    files: Vec<String>,
    edges: BTreeMap<String, BTreeSet<String>>,
    /// The files that name a path into `crate::apis`, with the path.
    into_apis: Vec<(String, Vec<String>)>,
}

impl Graph {
    fn build(files: &[File]) -> Graph {
        let by_module: BTreeMap<Vec<String>, String> = files
            .iter()
            .map(|f| (f.module.clone(), f.rel.clone()))
            .collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut into_apis = Vec::new();
        for file in files {
            let targets = edges.entry(file.rel.clone()).or_default();
            for path in paths_of(file, &by_module) {
                if path.first().is_some_and(|s| s == "apis") {
                    into_apis.push((file.rel.clone(), path.clone()));
                }
                // The longest prefix of the path that is a file's module.
                let target = (0..=path.len())
                    .rev()
                    .find_map(|n| by_module.get(&path[..n]))
                    .expect("the crate root is a file");
                if *target != file.rel {
                    targets.insert(target.clone());
                }
            }
        }
        Graph {
            files: files.iter().map(|f| f.rel.clone()).collect(),
            edges,
            into_apis,
        }
    }

    /// The strongly connected components (Tarjan), each sorted.
    fn components(&self) -> Vec<Vec<String>> {
        struct Tarjan<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            next: usize,
            out: Vec<Vec<String>>,
        }
        impl<'a> Tarjan<'a> {
            fn visit(&mut self, v: &'a str) {
                self.index.insert(v, self.next);
                self.low.insert(v, self.next);
                self.next += 1;
                self.stack.push(v);
                self.on_stack.insert(v);
                for w in self.graph.edges.get(v).into_iter().flatten() {
                    let w = w.as_str();
                    if !self.index.contains_key(w) {
                        self.visit(w);
                        let low = self.low[v].min(self.low[w]);
                        self.low.insert(v, low);
                    } else if self.on_stack.contains(w) {
                        let low = self.low[v].min(self.index[w]);
                        self.low.insert(v, low);
                    }
                }
                if self.low[v] == self.index[v] {
                    let mut component = Vec::new();
                    while let Some(w) = self.stack.pop() {
                        self.on_stack.remove(w);
                        component.push(w.to_owned());
                        if w == v {
                            break;
                        }
                    }
                    component.sort();
                    self.out.push(component);
                }
            }
        }
        let mut tarjan = Tarjan {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            next: 0,
            out: Vec::new(),
        };
        for file in &self.files {
            if !tarjan.index.contains_key(file.as_str()) {
                tarjan.visit(file);
            }
        }
        tarjan.out
    }

    /// One cycle through the component's first file, staying inside the component
    /// (breadth first, so it is a shortest one): `a.rs -> b.rs -> a.rs`.
    fn cycle(&self, component: &[String]) -> String {
        let start = &component[0];
        let inside: BTreeSet<&String> = component.iter().collect();
        let mut came_from: BTreeMap<&String, &String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(v) = queue.pop_front() {
            for w in self.edges.get(v).into_iter().flatten() {
                if !inside.contains(w) {
                    continue;
                }
                if w == start {
                    // Back from `v` to the start, then turned around.
                    let mut path = vec![start.as_str()];
                    let mut at = v;
                    while at != start {
                        path.push(at);
                        at = came_from[at];
                    }
                    path.push(start);
                    path.reverse();
                    return path.join(" -> ");
                }
                if !came_from.contains_key(w) {
                    came_from.insert(w, v);
                    queue.push_back(w);
                }
            }
        }
        format!("{component:?}")
    }
}

/// Every path the file names, made absolute (segments from the crate root): the ones
/// starting with `crate`, `super` or `self`, and the ones through a child module the
/// file (or an inline module in it) declares with `mod name;`. Use trees
/// (`use crate::{a::B, c::{D, E}}`) give one path per leaf.
fn paths_of(file: &File, by_module: &BTreeMap<Vec<String>, String>) -> Vec<Vec<String>> {
    let tokens = tokens(&file.code);
    // Child modules declared in the file, by the module path they are declared in.
    let mut out = Vec::new();
    // The inline modules the position is in: (name, brace depth at which it opened).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            Token::Punct('{') => {
                depth += 1;
                if let Some(name) = pending_mod.take() {
                    inline.push((name, depth));
                }
                i += 1;
                continue;
            }
            Token::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
                i += 1;
                continue;
            }
            Token::Punct(';') => {
                pending_mod = None;
                i += 1;
                continue;
            }
            Token::Ident(word) if word == "mod" => {
                if let Some(Token::Ident(name)) = tokens.get(i + 1) {
                    pending_mod = Some(name.clone());
                    i += 2;
                    continue;
                }
            }
            _ => {}
        }
        let here: Vec<String> = file
            .module
            .iter()
            .cloned()
            .chain(inline.iter().map(|(name, _)| name.clone()))
            .collect();
        let starts_path = matches!(tokens.get(i + 1), Some(Token::PathSep))
            && !matches!(tokens.get(i.wrapping_sub(1)), Some(Token::PathSep));
        if let (Token::Ident(first), true) = (&tokens[i], starts_path) {
            let base = match first.as_str() {
                "crate" => Some(Vec::new()),
                "self" => Some(here.clone()),
                "super" => Some(here[..here.len().saturating_sub(1)].to_vec()),
                name => {
                    // A child module of the current module, named without `self::`.
                    let mut child = here.clone();
                    child.push(name.to_owned());
                    by_module.contains_key(&child).then_some(here.clone())
                }
            };
            if let Some(base) = base {
                let (leaves, end) = use_tree(&tokens, i);
                for leaf in leaves {
                    let mut path = base.clone();
                    let mut segments = leaf.into_iter();
                    if first == "super" || first == "crate" || first == "self" {
                        segments.next();
                    }
                    for segment in segments {
                        match segment.as_str() {
                            "super" => {
                                path.pop();
                            }
                            "self" => {}
                            _ => path.push(segment),
                        }
                    }
                    out.push(path);
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
    out
}

/// The paths of a use tree (or a plain path) starting at token `i`: each leaf as its
/// segments, and the index of the token after the tree.
fn use_tree(tokens: &[Token], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        match tokens.get(i) {
            Some(Token::Ident(word)) => {
                prefix.push(word.clone());
                i += 1;
                if tokens.get(i) == Some(&Token::PathSep) {
                    i += 1;
                    continue;
                }
                return (vec![prefix], i);
            }
            Some(Token::Punct('*')) => return (vec![prefix], i + 1),
            Some(Token::Punct('{')) => {
                i += 1;
                let mut leaves = Vec::new();
                loop {
                    match tokens.get(i) {
                        Some(Token::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        Some(Token::Punct(',')) => i += 1,
                        Some(Token::Ident(word)) if word == "as" => i += 2,
                        Some(_) => {
                            let (inner, end) = use_tree(tokens, i);
                            for leaf in inner {
                                leaves.push(prefix.iter().cloned().chain(leaf).collect());
                            }
                            i = end;
                        }
                        None => break,
                    }
                }
                return (leaves, i);
            }
            // `crate::apis::<T>` and the like: the path so far.
            _ => return (vec![prefix], i),
        }
    }
}
