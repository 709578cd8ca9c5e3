//! Fuzzing the manifest parser: whatever bytes a damaged or hostile blob
//! holds, `regsweep::manifest::parse` returns (never panics, never overflows
//! the stack), and what it returns is bounded by what it was given.
//!
//! Inputs stay within the 4 MiB the loader enforces before parsing
//! ([`MAX_MANIFEST_BYTES`]); case counts keep the whole file to a few seconds.

use std::collections::HashSet;

use proptest::prelude::*;
use regsweep::digest::Digest;
use regsweep::manifest::{self, MAX_MANIFEST_BYTES, Manifest, ManifestError, media_types};
use serde_json::{Map, Value, json};

/// Every digest a parse returned must be one the input spelled out, and the
/// parse cannot return more references than the input has room for.
fn check_bounded(input: &[u8], parsed: &Manifest) {
    // The shortest spelling of a reference is `"sha256:<64 hex>"`, 73 bytes.
    let room = input.len() / 73 + 1;
    let refs = parsed.blobs.len() + parsed.children.len() + usize::from(parsed.subject.is_some());
    assert!(
        refs <= room,
        "{refs} references out of {} bytes",
        input.len()
    );
    let text = String::from_utf8_lossy(input);
    let spelled: HashSet<&str> = text
        .match_indices("sha256:")
        .filter_map(|(i, _)| text.get(i + 7..i + 7 + 64))
        .collect();
    for digest in parsed
        .blobs
        .iter()
        .chain(&parsed.children)
        .chain(&parsed.subject)
    {
        assert!(
            spelled.contains(digest.hex().as_str()),
            "{digest} is not in the input"
        );
    }
    assert!(
        parsed.blobs.windows(2).all(|w| w[0] < w[1]),
        "blobs sorted and deduplicated"
    );
    assert!(parsed.foreign.iter().all(|f| parsed.blobs.contains(f)));
}

fn parse_checked(input: &[u8]) -> Result<Manifest, ManifestError> {
    assert!(input.len() as u64 <= MAX_MANIFEST_BYTES);
    let result = manifest::parse(input);
    if let Ok(parsed) = &result {
        check_bounded(input, parsed);
    }
    result
}

/// How often a generated value is of the wrong shape, against [`GOOD`].
type Noise = u32;
/// Weight of well-formed values.
const GOOD: u32 = 60;
/// Near-valid manifests: now and then one field is off.
const NEAR_VALID: Noise = 1;
/// Wrong types everywhere.
const WRONG_TYPES: Noise = 30;

fn digest_text(noise: Noise) -> impl Strategy<Value = String> {
    prop_oneof![
        GOOD => any::<[u8; 32]>().prop_map(|b| Digest::from_bytes(b).to_string()),
        noise => "[a-z0-9]{0,8}:[0-9a-fA-F]{0,70}",
        noise => Just(format!("sha512:{}", "ab".repeat(64))),
        noise => any::<[u8; 32]>().prop_map(|b| format!("{}\n", Digest::from_bytes(b))),
        noise => ".{0,20}",
    ]
}

/// A JSON value of any type, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
        digest_text(GOOD).prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,10}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A descriptor, usually well-formed, sometimes with a field of the wrong type.
fn descriptor(noise: Noise) -> impl Strategy<Value = Value> {
    let annotations = prop::option::weighted(0.1, any_json());
    let good = (digest_text(noise), any::<u32>(), any::<bool>(), annotations).prop_map(
        |(digest, size, foreign, annotations)| {
            let mut d =
                json!({"mediaType": "application/octet-stream", "size": size, "digest": digest});
            if foreign {
                d["urls"] = json!(["https://example.invalid/layer"]);
            }
            if let Some(annotations) = annotations {
                d["annotations"] = annotations;
            }
            d
        },
    );
    prop_oneof![
        GOOD => good,
        noise => any_json(),
        noise => any_json().prop_map(|v| json!({"digest": v})),
    ]
}

/// A field: usually absent or of the type it has, sometimes anything.
fn field<S>(noise: Noise, typed: S) -> impl Strategy<Value = Option<Value>>
where
    S: Strategy<Value = Value> + 'static,
{
    prop_oneof![
        GOOD => typed.prop_map(Some),
        GOOD => Just(None),
        noise => any_json().prop_map(Some),
    ]
}

fn descriptors(noise: Noise, max: usize) -> impl Strategy<Value = Value> {
    prop::collection::vec(descriptor(noise), 0..max).prop_map(Value::Array)
}

fn media_type(noise: Noise) -> impl Strategy<Value = Value> {
    prop_oneof![
        GOOD => prop::sample::select(vec![
            media_types::DOCKER_MANIFEST,
            media_types::DOCKER_LIST,
            media_types::DOCKER_SCHEMA1,
            media_types::DOCKER_SCHEMA1_SIGNED,
            media_types::OCI_MANIFEST,
            media_types::OCI_INDEX,
            media_types::OCI_ARTIFACT,
        ])
        .prop_map(Value::from),
        noise => "application/[a-z.+]{1,30}".prop_map(Value::from),
    ]
}

/// A manifest of some kind: the known fields with random content (wrong
/// types as often as `noise` says), extra fields, sometimes huge arrays.
fn manifest_json(noise: Noise) -> impl Strategy<Value = Value> {
    let fs_layers = prop::collection::vec(
        prop_oneof![
            GOOD => digest_text(noise).prop_map(|d| json!({"blobSum": d})),
            noise => any_json(),
        ],
        0..6,
    )
    .prop_map(Value::Array);
    let layers = prop_oneof![
        GOOD => descriptors(noise, 8),
        1 => descriptors(noise, 1000),
    ];
    (
        field(
            noise,
            prop_oneof![
                GOOD => Just(json!(2)),
                GOOD / 4 => Just(json!(1)),
                noise => any::<u64>().prop_map(Value::from),
            ],
        ),
        field(noise, media_type(noise)),
        field(noise, descriptor(noise)),
        field(noise, layers),
        field(noise, descriptors(noise, 4)),
        field(noise, descriptors(noise, 8)),
        field(noise, descriptor(noise)),
        field(noise, fs_layers),
        prop::collection::btree_map("[a-zA-Z]{1,12}", any_json(), 0..3),
    )
        .prop_map(
            |(version, media, config, layers, blobs, manifests, subject, fs, extra)| {
                let mut m: Map<String, Value> = extra.into_iter().collect();
                let known = [
                    ("schemaVersion", version),
                    ("mediaType", media),
                    ("config", config),
                    ("layers", layers),
                    ("blobs", blobs),
                    ("manifests", manifests),
                    ("subject", subject),
                    ("fsLayers", fs),
                ];
                for (key, value) in known {
                    if let Some(value) = value {
                        m.insert(key.to_owned(), value);
                    }
                }
                Value::Object(m)
            },
        )
}

/// Writes `value` as JSON with every object key spelled otherwise in a way
/// Go's `encoding/json` matches to the same field: ASCII letters in either
/// case, `s` as `ſ` (U+017F) and `k` as the Kelvin sign (U+212A), chosen
/// by the bits of `seed`.
fn write_respelled(value: &Value, seed: &mut u64, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            for (i, (key, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let mut spelled = String::new();
                for c in key.chars() {
                    *seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let pick = (*seed >> 33) % 4;
                    spelled.push(match (c.to_ascii_lowercase(), pick) {
                        ('s', 0) => '\u{17f}',
                        ('k', 0) => '\u{212a}',
                        (_, 1) => c.to_ascii_uppercase(),
                        (_, 2) => c.to_ascii_lowercase(),
                        _ => c,
                    });
                }
                out.push_str(&serde_json::to_string(&spelled).unwrap());
                out.push(':');
                write_respelled(v, seed, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_respelled(v, seed, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

fn valid_image(layers: &[[u8; 32]]) -> Vec<u8> {
    let layers: Vec<Value> = layers
        .iter()
        .map(|b| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": 1, "digest": Digest::from_bytes(*b).to_string()}))
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": Digest::of_bytes(b"{}").to_string()},
        "layers": layers,
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_checked(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in any_json()) {
        let _ = parse_checked(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn near_valid_manifests_yield_exactly_their_references(value in manifest_json(NEAR_VALID)) {
        let bytes = serde_json::to_vec_pretty(&value).unwrap();
        if let Ok(parsed) = parse_checked(&bytes) {
            // Accepted: every descriptor was well-formed, and every one of
            // them is in the result, none dropped.
            let digests = |key: &str, field: &str| -> Vec<(Digest, bool)> {
                let list = match (key, value.get(key)) {
                    (_, None | Some(Value::Null)) => Vec::new(),
                    ("config" | "subject", Some(one)) => vec![one.clone()],
                    (_, Some(Value::Array(list))) => list.clone(),
                    (_, Some(other)) => panic!("accepted {key}: {other}"),
                };
                list.iter()
                    .map(|d| {
                        // Go's reader, like regsweep's, takes no struct from an array.
                        let (digest, urls) = (&d[field], d.get("urls"));
                        let text = digest.as_str().expect("accepted digest is a string");
                        let foreign = urls.is_some_and(|u| !u.is_null());
                        (Digest::parse(text).expect("accepted digest is sha256"), foreign)
                    })
                    .collect()
            };
            let mut blobs = Vec::new();
            let mut foreign = Vec::new();
            for (digest, urls) in [digests("config", "digest"), digests("layers", "digest"), digests("blobs", "digest")].concat() {
                blobs.push(digest);
                if urls {
                    foreign.push(digest);
                }
            }
            blobs.extend(digests("fsLayers", "blobSum").into_iter().map(|(d, _)| d));
            blobs.sort_unstable();
            blobs.dedup();
            foreign.sort_unstable();
            foreign.dedup();
            prop_assert_eq!(&parsed.blobs, &blobs);
            prop_assert_eq!(&parsed.foreign, &foreign);
            let children: Vec<Digest> = digests("manifests", "digest").into_iter().map(|(d, _)| d).collect();
            prop_assert_eq!(&parsed.children, &children);
            prop_assert_eq!(parsed.subject, digests("subject", "digest").first().map(|(d, _)| *d));
        }
    }

    #[test]
    fn keys_spelled_in_any_case_read_the_same(value in manifest_json(NEAR_VALID), seed in any::<u64>()) {
        let plain = parse_checked(&serde_json::to_vec(&value).unwrap());
        let mut seed = seed;
        let mut respelled = String::new();
        write_respelled(&value, &mut seed, &mut respelled);
        let odd = parse_checked(respelled.as_bytes());
        match (plain, odd) {
            (Ok(plain), Ok(odd)) => prop_assert_eq!(plain, odd),
            (Err(_), Err(_)) => {}
            (plain, odd) => prop_assert!(false, "{:?} vs {:?} for {}", plain, odd, respelled),
        }
    }

    #[test]
    fn manifests_with_wrong_types_never_panic(value in manifest_json(WRONG_TYPES)) {
        let _ = parse_checked(&serde_json::to_vec(&value).unwrap());
    }

    #[test]
    fn mutated_valid_manifests_never_panic(
        layers in prop::collection::vec(any::<[u8; 32]>(), 0..8),
        cuts in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..8),
    ) {
        let mut bytes = valid_image(&layers);
        prop_assert!(manifest::parse(&bytes).is_ok());
        for (at, byte, op) in cuts {
            if bytes.is_empty() {
                break;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, byte),
            }
        }
        let _ = parse_checked(&bytes);
    }
}

/// Nesting as deep as 4 MiB of brackets allows, in every place a parser
/// could recurse: an error, not a stack overflow (serde_json stops at 128
/// levels).
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    // Each case is a little under the 4 MiB limit.
    let budget = MAX_MANIFEST_BYTES as usize - 256;
    let nest = |open: &str, close: &str, inner: &str, budget: usize| {
        let depth = budget / (open.len() + close.len());
        let mut s = String::with_capacity(budget + inner.len());
        s.extend(std::iter::repeat_n(open, depth));
        s.push_str(inner);
        s.extend(std::iter::repeat_n(close, depth));
        s
    };
    let arrays = nest("[", "]", "", budget);
    let objects = nest("{\"a\":", "}", "1", budget);
    let cases = [
        arrays.clone(),
        format!(r#"{{"schemaVersion":2,"annotations":{objects}}}"#),
        format!(r#"{{"schemaVersion":2,"layers":{arrays}}}"#),
        format!(r#"{{"schemaVersion":2,"subject":{arrays}}}"#),
        format!(r#"{{"schemaVersion":2,"fsLayers":[{objects}]}}"#),
    ];
    for case in &cases {
        assert!(case.len() as u64 <= MAX_MANIFEST_BYTES);
        assert!(
            matches!(
                parse_checked(case.as_bytes()),
                Err(ManifestError::Invalid(_))
            ),
            "{}...",
            &case[..60]
        );
    }
    // Where a field is ignored (annotations, `urls`), the nesting is skipped
    // without recursion: the references around it are still found.
    let arrays = nest("[", "]", "", budget / 2);
    let image = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","annotations":{{"a":{arrays}}},"config":{{"digest":"{}","urls":{arrays}}}}}"#,
        media_types::OCI_MANIFEST,
        Digest::of_bytes(b"{}")
    );
    let parsed = parse_checked(image.as_bytes()).unwrap();
    assert_eq!(parsed.blobs, vec![Digest::of_bytes(b"{}")]);
    assert_eq!(parsed.foreign, parsed.blobs);
}

/// A manifest near the 4 MiB limit with as many layers as fit: parsed whole,
/// and every layer found once.
#[test]
fn huge_arrays_within_the_limit_parse_completely() {
    let layer = |n: u32| {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_be_bytes());
        b
    };
    let per_layer = valid_image(&[layer(0), layer(1)]).len() - valid_image(&[layer(0)]).len();
    let count = (MAX_MANIFEST_BYTES as usize - 4096) / per_layer;
    let layers: Vec<[u8; 32]> = (0..count as u32).map(layer).collect();
    let bytes = valid_image(&layers);
    assert!(bytes.len() as u64 <= MAX_MANIFEST_BYTES);
    let parsed = parse_checked(&bytes).unwrap();
    assert_eq!(parsed.blobs.len(), layers.len() + 1);

    // The same count of elements that are not descriptors: an error, found
    // without building a value per element.
    let numbers = format!(
        r#"{{"schemaVersion":2,"mediaType":"{}","layers":[{}]}}"#,
        media_types::OCI_MANIFEST,
        vec!["1"; 1_000_000].join(",")
    );
    assert!(matches!(
        parse_checked(numbers.as_bytes()),
        Err(ManifestError::Invalid(_))
    ));
}
