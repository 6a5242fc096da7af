//! `/api/openapi.json` is generated from the code (`#[utoipa::path]` on the handlers,
//! `ToSchema` on the config types), and these tests tie it to the code from the other
//! side, so it cannot drift: it documents exactly the routes of `api::ROUTES` with
//! their methods, every one of which is answered by a real handler (not the fallback
//! 404, not 405); the query parameters the handlers accept; every field serde reads
//! for a camera and its outputs (the list comes from serde's derive, not from here);
//! and the keys a live camera's JSON has.

mod common;

use std::collections::BTreeSet;

use camhub::api::{ALIASES, ROUTES, SNAPSHOT_PARAMS, STREAM_PARAMS, alias_params, openapi_json};
use camhub::config::{CameraOptions, OutputConfig, RedisOptions, ShmOptions};
use common::*;
use serde_json::Value;

fn doc() -> Value {
    serde_json::from_str(openapi_json()).expect("the document is JSON")
}

fn set<'a>(names: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    names.into_iter().map(str::to_owned).collect()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect()
}

#[test]
fn every_documented_route_is_served() {
    let hub = Hub::start_demo();
    let r = hub.get("/api/openapi.json");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let doc = r.json();
    let mut checked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys().filter(|k| *k != "parameters") {
            // A name that does not exist, so nothing is changed; the stream gets a bad
            // query so that it answers at once instead of streaming.
            let p = path.replace("{name}", "no-such-camera").replace("{session}", "no-such-session");
            let p = if p.ends_with(".mjpeg") { format!("{p}?fps=0") } else { p };
            let url = format!("{}{p}", hub.base);
            let r = match method.as_str() {
                "get" => http_get(&url),
                "delete" => http_send("DELETE", &url, None),
                "post" => http_send("POST", &url, Some("{}")),
                "put" => http_send("PUT", &url, Some("{}")),
                "patch" => http_send("PATCH", &url, Some("{}")),
                m => panic!("undocumented method kind {m}"),
            };
            assert_ne!(r.status, 405, "{method} {path}");
            assert!(!r.text().contains("no such route"), "{method} {path}: {}", r.text());
            checked += 1;
        }
    }
    assert!(checked >= 10, "{checked} operations");
    // The fallback really says "no such route", so the check above can fail.
    assert!(hub.get("/api/nothing").text().contains("no such route"));
}

#[test]
fn documents_exactly_the_routes_their_methods_and_parameters() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<(String, BTreeSet<String>)> = paths
        .iter()
        .map(|(p, ops)| (p.clone(), keys(ops).into_iter().filter(|k| k != "parameters").collect()))
        .collect();
    let code: BTreeSet<(String, BTreeSet<String>)> =
        ROUTES.iter().map(|(p, m)| (p.to_string(), set(m.iter().copied()))).collect();
    assert_eq!(documented, code);

    let mut ids = BTreeSet::new();
    for (path, ops) in paths {
        // Every `{param}` of the path, and no other, is documented as a path parameter.
        let in_path = set(path.split('{').skip(1).filter_map(|s| s.split_once('}')).map(|(n, _)| n));
        for (method, op) in ops.as_object().unwrap() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let of = |kind: &str| set(params.iter().filter(|p| p["in"] == kind).map(|p| p["name"].as_str().unwrap()));
            assert_eq!(of("path"), in_path, "{method} {path}");
            let query = of("query");
            let alias = ALIASES.iter().find(|(p, _)| p == path).map(|(_, of)| *of);
            let want = match (method.as_str(), path.rsplit('/').next().unwrap()) {
                _ if alias.is_some() => set(alias_params(path)),
                ("get", "snapshot.jpg") => set(SNAPSHOT_PARAMS.iter().copied()),
                ("get", "stream.mjpeg") => set(STREAM_PARAMS.iter().copied()),
                _ => BTreeSet::new(),
            };
            assert_eq!(query, want, "{method} {path}");
            // An alias says so, and names a route that exists.
            if let Some(of) = alias {
                assert_eq!(op["x-alias-of"], of, "{method} {path}");
                assert!(op["description"].as_str().unwrap().starts_with("Alias of"), "{method} {path}");
                assert!(paths.contains_key(of), "{path} is an alias of {of}, which is not documented");
            } else {
                assert!(op.get("x-alias-of").is_none(), "{method} {path}");
            }
            assert!(!keys(&op["responses"]).is_empty(), "{method} {path} has no responses");
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
}

/// The field names serde's derive reads for a struct, or the variant names of an
/// enum: the type's own list, taken by a deserializer that only listens.
fn serde_names<T: serde::de::DeserializeOwned>() -> BTreeSet<String> {
    use serde::de::{Error, Visitor, value};

    #[derive(Default)]
    struct Names(Option<&'static [&'static str]>);

    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, value::Error> {
            Err(value::Error::custom("only structs and enums have names"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, value::Error> {
            self.0 = Some(fields);
            Err(value::Error::custom("names taken"))
        }
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, value::Error> {
            self.0 = Some(variants);
            Err(value::Error::custom("names taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
        }
    }

    let mut names = Names::default();
    let _ = T::deserialize(&mut names);
    set(names.0.expect("serde names a struct's fields or an enum's variants").iter().copied())
}

#[test]
fn every_config_field_is_in_the_schema() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    for (name, fields) in [
        ("CameraOptions", serde_names::<CameraOptions>()),
        ("ShmOptions", serde_names::<ShmOptions>()),
        ("RedisOptions", serde_names::<RedisOptions>()),
    ] {
        assert_eq!(keys(&schemas[name]["properties"]), fields, "{name}: the schema's properties and serde's fields");
        // deny_unknown_fields, said in the schema too.
        assert_eq!(schemas[name]["additionalProperties"], false, "{name}");
    }
    // The fields the hand-written document once missed.
    for f in ["outputs", "memory_budget", "mode", "poll_interval"] {
        assert!(schemas["CameraOptions"]["properties"].get(f).is_some(), "{f}");
    }
    // An output is one of its kinds, each an object with that one key.
    let kinds: BTreeSet<String> = schemas["OutputConfig"]["oneOf"]
        .as_array()
        .expect("OutputConfig is oneOf its kinds")
        .iter()
        .flat_map(|k| keys(&k["properties"]))
        .collect();
    assert_eq!(kinds, serde_names::<OutputConfig>());
    // The outputs of a camera are that type, by name.
    assert_eq!(
        schemas["CameraOptions"]["properties"]["outputs"]["additionalProperties"]["$ref"],
        "#/components/schemas/OutputConfig"
    );
    // POST takes the same options and a name.
    let mut with_name = serde_names::<CameraOptions>();
    with_name.insert("name".into());
    assert_eq!(keys(&schemas["NewCamera"]["properties"]), with_name);
    // Every reference points at a schema that is there.
    let text = openapi_json();
    for r in text.split("\"#/components/schemas/").skip(1) {
        let name = &r[..r.find('"').unwrap()];
        assert!(schemas.get(name).is_some(), "dangling $ref {name}");
    }
}

#[test]
fn a_live_camera_has_the_documented_keys() {
    let doc = doc();
    let schema = &doc["components"]["schemas"]["Camera"];
    let documented = keys(&schema["properties"]);
    let hub = Hub::start_demo();
    let cams = hub.get("/api/cameras").json();
    let cams = cams.as_array().expect("a list of cameras");
    assert!(!cams.is_empty(), "the demo has cameras");
    for cam in cams {
        assert_eq!(keys(cam), documented, "{}: keys of GET /api/cameras and the Camera schema", cam["name"]);
        for r in schema["required"].as_array().unwrap() {
            assert!(!cam[r.as_str().unwrap()].is_null(), "{}: {r} is required", cam["name"]);
        }
        let one_of = |v: &Value, e: &Value| e["enum"].as_array().unwrap().contains(v);
        let schemas = &doc["components"]["schemas"];
        assert!(one_of(&cam["state"], &schema["properties"]["state"]), "{}", cam["state"]);
        assert!(one_of(&cam["tier"], &schema["properties"]["tier"]), "{}", cam["tier"]);
        for (key, enum_schema) in [("keep", "Keep"), ("transport", "Transport"), ("mode", "Mode")] {
            assert!(one_of(&cam[key], &schemas[enum_schema]), "{key} {}", cam[key]);
        }
    }
}

/// The headers a snapshot answer is documented with are the ones it sends, and the
/// `X-Snapshot-*` names (other snapshot caches' names) say what `X-Frame-*` say.
#[test]
fn a_live_snapshot_sends_the_documented_headers() {
    let doc = doc();
    let op = &doc["paths"]["/api/cameras/{name}/snapshot.jpg"]["get"];
    let documented: BTreeSet<String> =
        keys(&op["responses"]["200"]["headers"]).into_iter().map(|h| h.to_ascii_lowercase()).collect();
    for h in ["x-snapshot-age-ms", "x-snapshot-timestamp", "x-snapshot-cached"] {
        assert!(documented.contains(h), "{h} is documented: {documented:?}");
    }
    let hub = Hub::start_demo();
    for (q, cached) in [("", "false"), ("?cached=true", "true")] {
        let r = hub.get(&format!("/api/cameras/demo/snapshot.jpg{q}"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let sent: BTreeSet<String> =
            r.headers.iter().map(|(k, _)| k.to_ascii_lowercase()).filter(|k| k.starts_with("x-")).collect();
        assert_eq!(sent, documented, "{q}: the X- headers sent and documented");
        assert_eq!(r.header("x-snapshot-cached"), Some(cached), "{q}");
        assert_eq!(r.header("x-snapshot-source") == Some("cache"), cached == "true", "{q}");
        assert_eq!(r.header("x-snapshot-age-ms"), r.header("x-frame-age-ms"), "{q}");
        assert_eq!(r.header("x-snapshot-timestamp"), r.header("x-frame-timestamp"), "{q}");
        assert!(r.header("x-snapshot-timestamp").unwrap().ends_with('Z'), "{q}");
    }
}
