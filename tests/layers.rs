//! The layer table of ARCHITECTURE.md ("Layers"), checked: every file under
//! `src/` imports only its own room (top-level module) and rooms on lower
//! floors, and the rooms form no import circle. A failure names the file and
//! the edge that breaks the table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Floors, bottom up, and the rooms on each.
const FLOORS: &[(&str, &[&str])] = &[
    ("L0 vocabulary", &["error", "secret", "clock", "backoff", "telemetry", "config", "ffi"]),
    ("L1 media", &["media"]),
    ("L2 stages", &["source", "decode", "encode"]),
    ("L3 camera", &["camera"]),
    ("L4 consumers", &["snapshot", "output", "whep", "rtsp", "mqtt"]),
    ("L5 composition", &["hub"]),
    ("L6 faces", &["api", "cli", "main"]),
];

/// Floors whose rooms may import each other (the vocabulary; the faces).
const OPEN_FLOORS: &[usize] = &[0, 6];

fn floor(room: &str) -> Option<usize> {
    FLOORS.iter().position(|(_, rooms)| rooms.contains(&room))
}

/// The module path of a file: `src/camera/actor.rs` -> `[camera, actor]`.
fn module_path(file: &str) -> Vec<String> {
    let rel = file.strip_prefix("src/").unwrap_or(file).trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// The rooms a file's code names through `crate::` and `super::` paths.
fn imported_rooms(file: &str, text: &str) -> BTreeSet<String> {
    let module = module_path(file);
    let mut out = BTreeSet::new();
    // Inline modules (`mod tests { ... }`) add a level for `super::` below them.
    let mut inline_depth = 0;
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let t = code.trim_start();
        if (t.starts_with("mod ") || t.starts_with("pub mod ")) && t.trim_end().ends_with('{') {
            inline_depth += 1;
        }
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `my_crate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    out.insert(ident(item.trim()));
                }
            } else {
                out.insert(ident(rest));
            }
        }
        let mut rest = code;
        while let Some(i) = rest.find("super::") {
            let before = rest[..i].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                rest = &rest[i + 7..];
                continue;
            }
            let mut ups = 0;
            let mut tail = &rest[i..];
            while let Some(t) = tail.strip_prefix("super::") {
                ups += 1;
                tail = t;
            }
            rest = tail;
            let ups = ups - ups.min(inline_depth);
            // `super::` within a room's own files stays in the room; only a
            // top-level file's `super::` reaches the crate root.
            if ups >= module.len() {
                if let Some(g) = tail.strip_prefix('{') {
                    let end = g.find('}').unwrap_or(g.len());
                    for item in g[..end].split(',') {
                        out.insert(ident(item.trim()));
                    }
                } else {
                    out.insert(ident(tail));
                }
            }
        }
    }
    out.retain(|r| !r.is_empty() && r != "self" && r != "*");
    out
}

fn ident(s: &str) -> String {
    s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
}

/// Every break of the table, as a line naming the file and the edge.
fn check(files: &[(String, String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, text) in files {
        let module = module_path(file);
        let Some(room) = module.first().cloned() else { continue }; // lib.rs declares the rooms
        let Some(from) = floor(&room) else {
            problems
                .push(format!("{file}: room `{room}` is not in the layer table (tests/layers.rs, ARCHITECTURE.md)"));
            continue;
        };
        for target in imported_rooms(file, text) {
            if target == room {
                continue;
            }
            let Some(to) = floor(&target) else { continue }; // an item of the crate root, not a room
            edges.entry(room.clone()).or_default().insert(target.clone());
            let ok = to < from || (to == from && OPEN_FLOORS.contains(&from));
            if !ok {
                problems.push(format!(
                    "{file}: {room} ({}) imports {target} ({}): a room imports only its own folder and lower floors",
                    FLOORS[from].0, FLOORS[to].0
                ));
            }
        }
    }
    problems.extend(cycles(&edges));
    problems
}

/// Import circles between rooms, each as `a -> b -> a`.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_owned());
            out.push(format!("import circle: {}", c.join(" -> ")));
            return;
        }
        if !done.insert(n.to_owned()) {
            return;
        }
        stack.push(n.to_owned());
        for m in edges.get(n).into_iter().flatten() {
            visit(m, edges, stack, done, out);
        }
        stack.pop();
    }
    let mut out = Vec::new();
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        visit(n, edges, &mut Vec::new(), &mut done, &mut out);
    }
    out
}

fn read_tree(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).expect("read src/") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            read_tree(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap().to_string_lossy().into_owned();
            out.push((rel, std::fs::read_to_string(&p).expect("read source")));
        }
    }
}

#[test]
fn src_follows_the_layer_table() {
    let mut files = Vec::new();
    read_tree(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 20, "found only {} files under src/", files.len());
    let problems = check(&files);
    assert!(problems.is_empty(), "the layer table is broken:\n{}", problems.join("\n"));
}

// The test of the test: it sees the edges it must refuse.

fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(f, t)| (f.to_string(), t.to_string())).collect()
}

#[test]
fn a_back_edge_is_named_with_its_file() {
    let p = check(&files(&[
        ("src/config/mod.rs", "use crate::secret::Secret;\nuse crate::whep::Whep;\n"),
        ("src/whep/mod.rs", "use crate::config::WebRtcConfig;\n"),
    ]));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("src/config/mod.rs: config (L0 vocabulary) imports whep (L4 consumers)"), "{p:?}");
    assert!(p[1].contains("import circle: config -> whep -> config"), "{p:?}");
}

#[test]
fn rooms_of_one_floor_never_import_each_other_unless_the_floor_is_open() {
    let p = check(&files(&[
        ("src/decode.rs", "use crate::{error::Result, source::Codec};\n"),
        ("src/output/mod.rs", "fn f() { let _ = crate::snapshot::take; }\n"),
        ("src/config/mod.rs", "use crate::secret::Secret;\n"),
        ("src/api/mod.rs", "use crate::cli::demo;\n"),
    ]));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("src/decode.rs: decode (L2 stages) imports source (L2 stages)"), "{p:?}");
    assert!(p[1].starts_with("src/output/mod.rs: output (L4 consumers) imports snapshot"), "{p:?}");
}

#[test]
fn super_paths_resolve_and_comments_and_own_rooms_are_ignored() {
    let p = check(&files(&[
        ("src/camera/actor.rs", "use super::reconcile::Event;\n// crate::hub is only named here\n"),
        ("src/media/gop.rs", "use super::EncodedUnit;\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n"),
        ("src/snapshot.rs", "use super::hub::Hub;\n"),
        ("src/surprise.rs", "\n"),
    ]));
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("src/snapshot.rs: snapshot (L4 consumers) imports hub (L5 composition)"), "{p:?}");
    assert!(p[1].contains("room `surprise` is not in the layer table"), "{p:?}");
}
