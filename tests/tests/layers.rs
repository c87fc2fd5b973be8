//! No import cycles: inside every crate of the workspace, the modules (one per file) and, at
//! every level of the tree, the sibling modules taken with everything below them, form a
//! directed acyclic graph. Cargo already refuses cycles between crates; this test is the same
//! rule one level down, so the layers the README draws stay the layers the code has.
//!
//! A module depends on another when its code names an item defined there: through a `use`
//! (not a `pub use`, which only re-exports: names are followed through re-exports to where they
//! are defined), or through a path in its code (`crate::…`, `super::…`, an imported module's
//! `m::f`). Test-only code (`#[cfg(test)]`) does not count, nor do paths inside macro calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a panic is a failure report

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// A module: the file module that holds it (inline modules are
/// part of their file), the names it defines, and the names its `use`s bind.
#[derive(Default, Debug)]
struct Module {
    file: usize,
    parent: Option<usize>,
    children: BTreeMap<String, usize>,
    items: BTreeSet<String>,
    /// Name → full path (segments, starting at `crate`, `super`, `self` or a name in scope).
    bindings: BTreeMap<String, (Vec<String>, bool)>,
    globs: Vec<Vec<String>>,
    /// Paths this module's code names (its private `use`s and the paths in its bodies).
    references: Vec<Vec<String>>,
}

/// What a path names: a module, an item defined in one, or something from another crate.
#[derive(Clone, Copy)]
enum Target {
    Module(usize),
    Item(usize),
    External,
}

#[derive(Default)]
struct Crate {
    modules: Vec<Module>,
    /// The file modules: their path (`crate::a::b`) and source file.
    files: Vec<(String, PathBuf)>,
}

impl Crate {
    fn load(root: &Path) -> Result<Crate, String> {
        let mut krate = Crate::default();
        krate.files.push(("crate".into(), root.to_path_buf()));
        krate.modules.push(Module::default());
        krate.load_file(0, root, root.parent().unwrap().to_path_buf())?;
        Ok(krate)
    }

    fn load_file(&mut self, module: usize, file: &Path, dir: PathBuf) -> Result<(), String> {
        let source = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed = syn::parse_file(&source).map_err(|e| format!("{}: {e}", file.display()))?;
        self.load_items(module, &parsed.items, &dir)
    }

    /// `dir` is where this module's `mod x;` files live.
    fn load_items(&mut self, module: usize, items: &[syn::Item], dir: &Path) -> Result<(), String> {
        for item in items {
            if is_test_only(item) {
                continue;
            }
            match item {
                syn::Item::Mod(m) => {
                    let name = m.ident.to_string();
                    let child = self.modules.len();
                    self.modules.push(Module {
                        parent: Some(module),
                        file: self.modules[module].file,
                        ..Module::default()
                    });
                    self.modules[module].children.insert(name.clone(), child);
                    let path_attr = m.attrs.iter().find_map(|a| match &a.meta {
                        syn::Meta::NameValue(nv) if nv.path.is_ident("path") => match &nv.value {
                            syn::Expr::Lit(syn::ExprLit {
                                lit: syn::Lit::Str(s), ..
                            }) => Some(s.value()),
                            _ => None,
                        },
                        _ => None,
                    });
                    match &m.content {
                        Some((_, inner)) => self.load_items(child, inner, &dir.join(&name))?,
                        None => {
                            let (file, child_dir) = match path_attr {
                                Some(p) => (dir.join(&p), dir.join(&p).parent().unwrap().to_path_buf()),
                                None if dir.join(format!("{name}.rs")).exists() => {
                                    (dir.join(format!("{name}.rs")), dir.join(&name))
                                }
                                None => (dir.join(&name).join("mod.rs"), dir.join(&name)),
                            };
                            let file_path = format!("{}::{name}", self.path_of(module));
                            self.modules[child].file = self.files.len();
                            self.files.push((file_path, file.clone()));
                            self.load_file(child, &file, child_dir)?;
                        }
                    }
                }
                syn::Item::Use(u) => {
                    let public = !matches!(u.vis, syn::Visibility::Inherited);
                    let mut found = Vec::new();
                    flatten(&u.tree, &mut Vec::new(), &mut found);
                    for (path, alias) in found {
                        if !public {
                            self.modules[module].references.push(path.clone());
                        }
                        match alias {
                            Some(name) => {
                                self.modules[module].bindings.insert(name, (path, public));
                            }
                            None => self.modules[module].globs.push(path),
                        }
                    }
                }
                other => {
                    if let Some(name) = item_name(other) {
                        self.modules[module].items.insert(name);
                    }
                    let mut paths = Paths::default();
                    paths.visit_item(other);
                    self.modules[module].references.extend(paths.0);
                }
            }
        }
        Ok(())
    }

    fn path_of(&self, module: usize) -> String {
        let mut names = Vec::new();
        let mut at = module;
        while let Some(parent) = self.modules[at].parent {
            names.push(
                self.modules[parent]
                    .children
                    .iter()
                    .find(|(_, &c)| c == at)
                    .unwrap()
                    .0
                    .clone(),
            );
            at = parent;
        }
        names.push("crate".into());
        names.reverse();
        names.join("::")
    }

    /// The module that defines what `path`, named in `module`, refers to; `None` for names
    /// from other crates, the prelude, or locals.
    fn resolve(&self, module: usize, path: &[String], depth: usize) -> Option<Target> {
        let (first, rest) = path.split_first()?;
        if depth > 32 {
            return None;
        }
        let mut at = match first.as_str() {
            "crate" => Target::Module(0),
            "self" => Target::Module(module),
            "super" => Target::Module(self.modules[module].parent?),
            name => self.lookup(module, name, depth)?,
        };
        for segment in rest {
            at = match (at, segment.as_str()) {
                (Target::Item(_) | Target::External, _) => return Some(at),
                (Target::Module(m), "super") => Target::Module(self.modules[m].parent?),
                (Target::Module(m), "self") => Target::Module(m),
                // A name this module does not show (made by a macro, say): depend on it.
                (Target::Module(m), name) => self.lookup(m, name, depth).unwrap_or(Target::Item(m)),
            };
        }
        Some(at)
    }

    /// `name` in `module`'s scope: a child module, an item, a `use`, a glob's name.
    fn lookup(&self, module: usize, name: &str, depth: usize) -> Option<Target> {
        let m = &self.modules[module];
        if let Some(&child) = m.children.get(name) {
            return Some(Target::Module(child));
        }
        if m.items.contains(name) {
            return Some(Target::Item(module));
        }
        if let Some((target, _)) = m.bindings.get(name) {
            // A `use` of nothing in this crate imports from another.
            return Some(self.resolve(module, target, depth + 1).unwrap_or(Target::External));
        }
        m.globs
            .iter()
            .find_map(|glob| match self.resolve(module, glob, depth + 1) {
                Some(Target::Module(source)) if self.shows(source, name) => self.lookup(source, name, depth + 1),
                _ => None,
            })
    }

    /// Whether a glob import of `module` brings `name`.
    fn shows(&self, module: usize, name: &str) -> bool {
        let m = &self.modules[module];
        m.items.contains(name)
            || m.children.contains_key(name)
            || m.bindings.get(name).is_some_and(|(_, public)| *public)
    }

    /// File module → the file modules it depends on.
    fn file_graph(&self) -> BTreeMap<usize, BTreeSet<usize>> {
        self.edges().into_keys().fold(
            (0..self.files.len()).map(|f| (f, BTreeSet::new())).collect(),
            |mut graph, (from, to)| {
                graph.get_mut(&from).unwrap().insert(to);
                graph
            },
        )
    }

    /// Every dependency between two file modules, with one path that makes it.
    fn edges(&self) -> BTreeMap<(usize, usize), String> {
        let mut edges = BTreeMap::new();
        for (index, module) in self.modules.iter().enumerate() {
            for reference in &module.references {
                // Naming a module is no dependency; naming an item in it is.
                if let Some(Target::Item(target)) = self.resolve(index, reference, 0) {
                    let (from, to) = (module.file, self.modules[target].file);
                    if from != to {
                        edges.entry((from, to)).or_insert_with(|| reference.join("::"));
                    }
                }
            }
        }
        edges
    }

    /// The dependencies inside a cycle, to say what to untie.
    fn explain(&self, cycle: &[String]) -> Vec<String> {
        let inside = |f: usize| {
            let file = &self.files[f].0;
            cycle.iter().any(|m| match m.strip_suffix('/') {
                Some(dir) => file == dir || file.starts_with(&format!("{dir}::")),
                None => file == m,
            })
        };
        self.edges()
            .into_iter()
            .filter(|((from, to), _)| inside(*from) && inside(*to))
            .map(|((from, to), why)| format!("    {} → {} ({why})", self.files[from].0, self.files[to].0))
            .collect()
    }

    /// Every cycle: among the files, and among the siblings of each directory (a sibling
    /// stands for itself and everything below it). A file module depending on its own parent
    /// or child is a cycle only when the other direction exists too.
    fn cycles(&self) -> Vec<Vec<String>> {
        let graph = self.file_graph();
        let name = |f: usize| self.files[f].0.clone();
        let mut found: Vec<Vec<String>> = strongly_connected(&graph)
            .into_iter()
            .map(|c| c.into_iter().map(name).collect())
            .collect();
        // Siblings: each file's path below a common parent.
        let paths: Vec<Vec<&str>> = self.files.iter().map(|(p, _)| p.split("::").collect()).collect();
        let mut levels: BTreeMap<Vec<&str>, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
        for (&from, targets) in &graph {
            for &to in targets {
                let (a, b) = (&paths[from], &paths[to]);
                let common = a.iter().zip(b.iter()).take_while(|(x, y)| x == y).count();
                if common < a.len() && common < b.len() {
                    levels
                        .entry(a[..common].to_vec())
                        .or_default()
                        .entry(a[common])
                        .or_default()
                        .insert(b[common]);
                }
            }
        }
        for (parent, siblings) in levels {
            let ids: Vec<&str> = siblings
                .keys()
                .chain(siblings.values().flatten())
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let index = |s: &str| ids.iter().position(|x| *x == s).unwrap();
            let g: BTreeMap<usize, BTreeSet<usize>> = (0..ids.len())
                .map(|i| {
                    (
                        i,
                        siblings
                            .get(ids[i])
                            .map(|t| t.iter().map(|s| index(s)).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect();
            for cycle in strongly_connected(&g) {
                let prefix = parent.join("::");
                // A sibling with modules below it is marked `dir/`: it stands for all of them.
                let members: Vec<String> = cycle
                    .into_iter()
                    .map(|i| format!("{prefix}::{}", ids[i]))
                    .map(|m| {
                        if self.files.iter().any(|(f, _)| f.starts_with(&format!("{m}::"))) {
                            format!("{m}/")
                        } else {
                            m
                        }
                    })
                    .collect();
                if !found.iter().any(|c| {
                    c.iter()
                        .all(|f| members.iter().any(|m| f.starts_with(m.trim_end_matches('/'))))
                }) {
                    found.push(members);
                }
            }
        }
        found
    }
}

/// The strongly connected components with more than one member (Tarjan's algorithm).
fn strongly_connected(graph: &BTreeMap<usize, BTreeSet<usize>>) -> Vec<Vec<usize>> {
    struct State<'g> {
        graph: &'g BTreeMap<usize, BTreeSet<usize>>,
        index: BTreeMap<usize, usize>,
        low: BTreeMap<usize, usize>,
        stack: Vec<usize>,
        on_stack: BTreeSet<usize>,
        out: Vec<Vec<usize>>,
    }
    fn visit(s: &mut State, v: usize) {
        let i = s.index.len();
        s.index.insert(v, i);
        s.low.insert(v, i);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in s.graph.get(&v).into_iter().flatten() {
            if !s.index.contains_key(&w) {
                visit(s, w);
                let low = s.low[&v].min(s.low[&w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(&w) {
                let low = s.low[&v].min(s.index[&w]);
                s.low.insert(v, low);
            }
        }
        if s.low[&v] == s.index[&v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(&v) {
            visit(&mut state, v);
        }
    }
    state.out
}

fn is_test_only(item: &syn::Item) -> bool {
    let attrs: &[syn::Attribute] = match item {
        syn::Item::Mod(m) => &m.attrs,
        syn::Item::Fn(f) => &f.attrs,
        syn::Item::Use(u) => &u.attrs,
        syn::Item::Impl(i) => &i.attrs,
        _ => return false,
    };
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Ident>().is_ok_and(|i| i == "test"))
}

fn item_name(item: &syn::Item) -> Option<String> {
    Some(match item {
        syn::Item::Const(i) => i.ident.to_string(),
        syn::Item::Enum(i) => i.ident.to_string(),
        syn::Item::Fn(i) => i.sig.ident.to_string(),
        syn::Item::Macro(i) => i.ident.as_ref()?.to_string(),
        syn::Item::Static(i) => i.ident.to_string(),
        syn::Item::Struct(i) => i.ident.to_string(),
        syn::Item::Trait(i) => i.ident.to_string(),
        syn::Item::Type(i) => i.ident.to_string(),
        syn::Item::Union(i) => i.ident.to_string(),
        _ => return None,
    })
}

/// A `use` tree as (full path, the name it binds); a glob binds no name.
fn flatten(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Option<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            flatten(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) if n.ident == "self" => out.push((prefix.clone(), prefix.last().cloned())),
        syn::UseTree::Name(n) => {
            let mut path = prefix.clone();
            path.push(n.ident.to_string());
            out.push((path, Some(n.ident.to_string())));
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            if r.ident != "self" {
                path.push(r.ident.to_string());
            }
            out.push((path, Some(r.rename.to_string())));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), None)),
        syn::UseTree::Group(g) => g.items.iter().for_each(|t| flatten(t, prefix, out)),
    }
}

/// The paths named in an item's code (types, expressions, patterns, trait bounds), skipping
/// nested modules and `use`s (the loader handles those) and test-only code.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl<'ast> Visit<'ast> for Paths {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() {
            self.0.push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        }
        syn::visit::visit_path(self, path);
    }
    fn visit_item_mod(&mut self, _: &'ast syn::ItemMod) {}
    fn visit_item_use(&mut self, _: &'ast syn::ItemUse) {}
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test_only(&syn::Item::Fn(f.clone())) {
            syn::visit::visit_item_fn(self, f);
        }
    }
}

/// Every library, binary, test and bench target of the workspace, by `cargo metadata`.
fn targets() -> Vec<(String, PathBuf)> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut out = Vec::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            let name = format!(
                "{} ({})",
                package["name"].as_str().unwrap(),
                target["name"].as_str().unwrap()
            );
            out.push((name, PathBuf::from(target["src_path"].as_str().unwrap())));
        }
    }
    out
}

#[test]
fn no_crate_of_the_workspace_has_an_import_cycle() {
    let mut report = Vec::new();
    let mut files = 0;
    for (name, root) in targets() {
        let krate = Crate::load(&root).unwrap();
        files += krate.files.len();
        for cycle in krate.cycles() {
            report.push(format!("{name}: {}", cycle.join(" ↔ ")));
            report.extend(krate.explain(&cycle));
        }
    }
    assert!(
        files > 100,
        "the check read {files} files: it is not looking at the workspace"
    );
    assert!(report.is_empty(), "import cycles:\n{}", report.join("\n"));
}

/// The check finds what it is for: a cycle through a re-export, one between directories,
/// and none where a child only uses its parent.
#[test]
fn the_check_finds_the_cycles_it_is_for() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    };
    let cycles = |lib: &str| {
        write("lib.rs", lib);
        let krate = Crate::load(&dir.path().join("lib.rs")).unwrap();
        krate.cycles()
    };
    write("a.rs", "use crate::b::B; pub struct A(B);");
    write("b.rs", "pub struct B; pub fn f() -> super::c::C { todo!() }");
    write("c.rs", "pub use crate::d::C;");
    write("d.rs", "use crate::facade::A; pub struct C(A);");
    write("facade.rs", "pub use crate::a::*;");
    write("x/mod.rs", "mod y; pub struct X; pub use y::Y;");
    write("x/y.rs", "use super::X; pub struct Y(X);");
    write("p/mod.rs", "mod q; pub fn p() -> q::Q { todo!() }");
    write("p/q.rs", "pub struct Q; pub fn f() { super::p(); }");
    write("dirs/mod.rs", "pub mod one; pub mod two;");
    write("dirs/one/mod.rs", "pub mod inner; pub mod other;");
    write("dirs/one/inner.rs", "pub fn i() { crate::dirs::two::deep::t(); }");
    write("dirs/one/other.rs", "pub fn o() {}");
    write("dirs/two/mod.rs", "pub mod deep;");
    write(
        "dirs/two/deep.rs",
        "pub fn t() {} pub fn u() { crate::dirs::one::other::o(); }",
    );
    let found = cycles("mod a; mod b; mod c; mod d; mod facade; mod x; mod p; mod dirs;");
    let text: Vec<String> = found.iter().map(|c| c.join(" ")).collect();
    assert!(
        text.iter().any(|c| c == "crate::a crate::b crate::d"),
        "through re-exports: {text:?}"
    );
    assert!(
        text.iter().any(|c| c == "crate::p crate::p::q"),
        "parent and child both ways: {text:?}"
    );
    assert!(
        text.iter().any(|c| c == "crate::dirs::one/ crate::dirs::two/"),
        "between directories: {text:?}"
    );
    assert_eq!(found.len(), 3, "a child using its parent, alone, is no cycle: {text:?}");
}
