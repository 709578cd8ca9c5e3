//! The bundled example storage tree, `fixtures/registry/`: how it is made
//! (an ignored test run by `fixtures/regenerate.sh`, using the real registry
//! and skopeo) and a check that the committed tree still has the shape the
//! regeneration gives it.

mod registry_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use registry_support::oci::Layout;
use registry_support::skopeo::{Format, push};
use registry_support::{Registry, random_hex, require_tools, sha256_digest, tree};
use walkdir::WalkDir;

fn fixture_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/registry")
}

/// Writes `fixtures/registry/` from scratch:
/// - `app:latest` pushed twice (an untagged manifest in its history);
/// - `tools/multi:1.0`, a two-platform OCI index;
/// - one base layer under all three images, so linked from both repositories;
/// - an orphan blob uploaded to `app` and referenced by nothing;
/// - an orphan blob uploaded to `app` and then unlinked (`DELETE
///   /v2/app/blobs/<digest>`), so no link anywhere names it.
///
/// Empty directories are removed: git would not keep them.
#[test]
#[ignore = "rewrites fixtures/registry; run fixtures/regenerate.sh"]
fn regenerate_fixture() {
    if !require_tools() {
        return;
    }
    let mut reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let mut layout = Layout::new(&dir.path().join("layout"));
    let base = layout.layer("base");

    for label in ["app-1", "app-2"] {
        let own = layout.layer(label);
        let image = layout.image(&[&base, &own], "amd64");
        layout.tag(label, &image.manifest);
        assert_eq!(
            push(&reg, &layout, label, "app", "latest", Format::Oci),
            image.digest()
        );
        println!("app:latest = {} ({label})", image.digest());
    }
    let amd = layout.layer("multi-amd64");
    let arm = layout.layer("multi-arm64");
    let a = layout.image(&[&base, &amd], "amd64");
    let b = layout.image(&[&base, &arm], "arm64");
    let index = layout.index(&[&a, &b]);
    layout.tag("multi", &index.manifest);
    assert_eq!(
        push(&reg, &layout, "multi", "tools/multi", "1.0", Format::Oci),
        index.digest()
    );
    println!(
        "tools/multi:1.0 = {} (children {}, {})",
        index.digest(),
        a.digest(),
        b.digest()
    );

    let orphan = reg.upload_blob("app", format!("orphan {}\n", random_hex(8)).as_bytes());
    let unlinked = reg.upload_blob("app", format!("unlinked {}\n", random_hex(8)).as_bytes());
    assert_eq!(
        reg.delete_blob("app", &unlinked),
        202,
        "DELETE blob {unlinked}"
    );
    println!(
        "base layer {}\norphan blob {orphan}\nunlinked blob {unlinked}",
        base.digest()
    );
    reg.stop();

    let target = fixture_root();
    if target.exists() {
        fs::remove_dir_all(&target).unwrap();
    }
    tree::copy_tree(reg.root(), &target);
    remove_empty_dirs(&target);
    let bytes: u64 = tree::blobs(&target).values().sum();
    println!("wrote {} ({bytes} bytes of blobs)", target.display());
}

fn remove_empty_dirs(root: &Path) {
    for e in WalkDir::new(root).contents_first(true) {
        let e = e.unwrap();
        if e.file_type().is_dir() && fs::read_dir(e.path()).unwrap().next().is_none() {
            fs::remove_dir(e.path()).unwrap();
        }
    }
}

/// `repositories/<repo>/...` → digest, for every link file.
fn links_by_path(root: &Path) -> BTreeMap<String, String> {
    tree::links(root)
        .into_iter()
        .map(|l| (l.path, l.target))
        .collect()
}

/// Digests named by the links under `prefix`.
fn targets(links: &BTreeMap<String, String>, prefix: &str) -> BTreeSet<String> {
    links
        .iter()
        .filter(|(path, _)| path.starts_with(prefix))
        .map(|(_, target)| target.clone())
        .collect()
}

/// The committed fixture still has what `regenerate_fixture` put there.
#[test]
fn committed_fixture_has_expected_shape() {
    let root = fixture_root();
    let v2 = tree::v2(&root);
    for repo in ["app", "tools/multi"] {
        for child in ["_manifests", "_layers"] {
            let path = v2.join("repositories").join(repo).join(child);
            assert!(path.is_dir(), "fixture lacks {}", path.display());
        }
    }

    // Every blob hashes to its name; every link is a bare digest (no
    // newline) of a blob that exists.
    let blobs = tree::blobs(&root);
    for digest in blobs.keys() {
        let data = fs::read(tree::blob_data(&root, digest)).unwrap();
        assert_eq!(&sha256_digest(&data), digest, "fixture blob content");
    }
    let links = links_by_path(&root);
    for (path, target) in &links {
        let hex = target.strip_prefix("sha256:").unwrap_or("");
        assert!(
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{path} is not a bare sha256 digest: {target:?}"
        );
        assert!(
            blobs.contains_key(target),
            "{path} names a missing blob {target}"
        );
    }

    // app:latest was pushed twice: its index holds the untagged first push.
    let app_history = tree::tag_index(&root, "app", "latest");
    let app_current = &links["app/_manifests/tags/latest/current/link"];
    assert!(
        app_history.len() >= 2,
        "app:latest has no history: {app_history:?}"
    );
    assert!(app_history.contains(app_current));
    let app_revisions = targets(&links, "app/_manifests/revisions/");
    assert!(
        app_revisions.iter().any(|r| r != app_current),
        "app has no untagged revision"
    );

    // tools/multi:1.0 is an OCI index whose children are revisions there.
    let multi_current = &links["tools/multi/_manifests/tags/1.0/current/link"];
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(tree::blob_data(&root, multi_current)).unwrap()).unwrap();
    assert_eq!(index["mediaType"], registry_support::oci::OCI_INDEX);
    let children: BTreeSet<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(
        children.len() >= 2,
        "the index has {} children",
        children.len()
    );
    let multi_revisions = targets(&links, "tools/multi/_manifests/revisions/");
    assert!(
        children.is_subset(&multi_revisions),
        "index children are not revisions of tools/multi"
    );

    // A base layer linked from both repositories.
    let app_layers = targets(&links, "app/_layers/");
    let multi_layers = targets(&links, "tools/multi/_layers/");
    assert!(
        !app_layers.is_disjoint(&multi_layers),
        "no layer is shared between app and tools/multi"
    );

    // An orphan no link names at all, and one linked but referenced by no
    // manifest.
    let linked: BTreeSet<&String> = links.values().collect();
    assert!(
        blobs.keys().any(|d| !linked.contains(d)),
        "no blob without any link"
    );
    let referenced: BTreeSet<String> = app_revisions
        .iter()
        .chain(&multi_revisions)
        .flat_map(|m| {
            let json: serde_json::Value =
                serde_json::from_slice(&fs::read(tree::blob_data(&root, m)).unwrap()).unwrap();
            let config = json["config"]["digest"].as_str().map(str::to_string);
            let layers = json["layers"].as_array().cloned().unwrap_or_default();
            config
                .into_iter()
                .chain(
                    layers
                        .iter()
                        .map(|l| l["digest"].as_str().unwrap().to_string()),
                )
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        app_layers.iter().any(|d| !referenced.contains(d)),
        "no blob linked into app but referenced by no manifest"
    );

    // Small enough to read by hand.
    let bytes: u64 = blobs.values().sum();
    assert!(bytes < 100_000, "fixture blobs take {bytes} bytes");
}
