//! The bad input corpus: damaged, odd or hostile storage trees, each put
//! through the real binary as `gc`, `gc -m` and `verify` (each on a fresh
//! copy of the same tree). For every case: the documented exit code (README:
//! 0 clean, 1 finished with warnings / something is broken, 2 refused), a
//! message naming the path at fault (on stderr and in the JSON report), no
//! panic, no hang, and no file a live image needs lost by a real `gc` run.
//! `verify` changes nothing, ever.

mod bad_input_support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use bad_input_support::{
    Expect, Tree, check, check_tree, digest_of, hex, non_utf8, run, schema2, snapshot, write,
};

/// A clean image next to the damage, in its own repository: it must come
/// through every case whole.
fn bystander(tree: &Tree) -> Vec<PathBuf> {
    tree.image("bystander", Some("stable"), "bystander").files
}

#[test]
fn clean_tree_is_clean_for_every_command() {
    check(|t| {
        let mut live = t.image("app", Some("v1"), "one").files;
        live.extend(bystander(t));
        Expect::codes(0, 0, 0)
            .live(live)
            .verify_args(&["--digests"])
    });
}

#[test]
fn empty_link() {
    // Revision link: gc reports it and keeps the image (the path counts).
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let link = t.revision_link("app", &image.manifest);
        write(&link, b"");
        Expect::codes(1, 1, 1)
            .names(&link)
            .live(image.files)
            .live(bystander(t))
    });
    // Tag current link: reported; the tag's history stays a root.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let link = t.tag_current("app", "v1");
        write(&link, b"");
        Expect::codes(1, 1, 1)
            .names(&link)
            .live(image.files)
            .live(bystander(t))
    });
    // Layer and tag history links: gc decides from their paths and does not
    // open them (README); verify does.
    for which in ["layer", "history"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            let link = match which {
                "layer" => t.layer_link("app", &image.layers[0]),
                _ => t.tag_index_link("app", "v1", &image.manifest),
            };
            write(&link, b"");
            Expect::codes(0, 0, 1)
                .verify_names(&link)
                .live(image.files)
                .live(bystander(t))
        });
    }
}

#[test]
fn link_with_a_trailing_newline() {
    for which in ["revision", "current", "layer", "history"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            let link = match which {
                "revision" => t.revision_link("app", &image.manifest),
                "current" => t.tag_current("app", "v1"),
                "layer" => t.layer_link("app", &image.layers[1]),
                _ => t.tag_index_link("app", "v1", &image.manifest),
            };
            write(&link, format!("{}\n", image.manifest).as_bytes());
            let expect = if matches!(which, "revision" | "current") {
                Expect::codes(1, 1, 1).names(&link)
            } else {
                Expect::codes(0, 0, 1).verify_names(&link)
            };
            expect.live(image.files).live(bystander(t))
        });
    }
}

#[test]
fn link_whose_content_disagrees_with_its_path() {
    for which in ["revision", "layer", "history"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            let other = t.image("app", None, "two");
            let link = match which {
                "revision" => t.revision_link("app", &image.manifest),
                "layer" => t.layer_link("app", &image.layers[0]),
                _ => t.tag_index_link("app", "v1", &image.manifest),
            };
            write(&link, other.manifest.as_bytes());
            let expect = if which == "revision" {
                Expect::codes(1, 1, 1).names(&link)
            } else {
                Expect::codes(0, 0, 1).verify_names(&link)
            };
            expect.live(image.files).live(bystander(t))
        });
    }
}

#[test]
fn link_to_a_missing_revision_or_blob() {
    // A tag naming a manifest that is nowhere: gc cannot read what the tag
    // needs and keeps the repository whole; verify names the missing
    // revision and the missing blob.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let ghost = digest_of(b"a manifest never pushed");
        t.tag("app", "ghost", &ghost);
        let orphan = t.blob(b"linked, unreferenced layer");
        let orphan_link = t.link_layer("app", &orphan);
        Expect::codes(1, 1, 1)
            .names(t.blob_data(&ghost))
            .verify_names(t.revision_link("app", &ghost))
            .live(image.files)
            .live([t.blob_data(&orphan), orphan_link])
            .live(bystander(t))
    });
    // A tag naming a stored manifest with no revision link: gc keeps it
    // (the tag is a root); the registry would answer `manifest unknown`.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let revision = t.revision_link("app", &image.manifest);
        fs::remove_dir_all(revision.parent().unwrap()).unwrap();
        let needed: Vec<PathBuf> = image.files.into_iter().filter(|f| *f != revision).collect();
        Expect::codes(0, 0, 1)
            .verify_names(&revision)
            .live(needed)
            .live(bystander(t))
    });
    // A revision link whose manifest blob is gone.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let lost = t.image("app", None, "lost");
        fs::remove_dir_all(t.blob_data(&lost.manifest).parent().unwrap()).unwrap();
        Expect::codes(1, 1, 1)
            .names(t.blob_data(&lost.manifest))
            .live(image.files)
            .live(bystander(t))
    });
    // A layer link or a tag history entry naming a blob that is not stored:
    // garbage (gc removes it), not damage.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        t.link_layer("app", &digest_of(b"never uploaded"));
        write(
            &t.tag_index_link("app", "v1", &digest_of(b"never pushed")),
            digest_of(b"never pushed").as_bytes(),
        );
        Expect::codes(0, 0, 0).live(image.files).live(bystander(t))
    });
}

/// A tagged manifest of `repo` whose bytes are `bytes` (stored under their
/// own digest), next to a linked layer only it could reference.
fn damaged_manifest(t: &Tree, bytes: &[u8]) -> (String, Vec<PathBuf>) {
    let layer = t.blob(b"a layer of the damaged image");
    let image = t.manifest("app", Some("v1"), bytes, std::slice::from_ref(&layer));
    (image.manifest, image.files)
}

#[test]
fn manifest_that_is_not_json() {
    check(|t| {
        let (manifest, files) = damaged_manifest(t, b"this is not JSON {");
        Expect::codes(1, 1, 1)
            .names(t.blob_data(&manifest))
            .live(files)
            .live(bystander(t))
    });
}

#[test]
fn truncated_manifest() {
    // The data file cut short: it no longer matches its digest.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let data = t.blob_data(&image.manifest);
        let bytes = fs::read(&data).unwrap();
        fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
        Expect::codes(1, 1, 1)
            .names(&data)
            .live(image.files)
            .live(bystander(t))
            .verify_args(&["--digests"])
    });
    // Half a manifest stored under its own digest: not JSON.
    check(|t| {
        let layer = t.blob(b"layer");
        let full = schema2(&layer, std::slice::from_ref(&layer));
        let (manifest, files) = damaged_manifest(t, &full[..full.len() / 2]);
        Expect::codes(1, 1, 1)
            .names(t.blob_data(&manifest))
            .live(files)
            .live(bystander(t))
    });
}

#[test]
fn huge_manifest_over_the_4_mib_limit() {
    check(|t| {
        let layer = t.blob(b"the one real layer");
        let config = t.blob(b"{}");
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&schema2(&config, std::slice::from_ref(&layer))).unwrap();
        manifest["annotations"] = serde_json::json!({"padding": "x".repeat(5 << 20)});
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let image = t.manifest("app", Some("v1"), &bytes, &[config, layer]);
        Expect::codes(1, 1, 1)
            .names(t.blob_data(&image.manifest))
            .live(image.files)
            .live(bystander(t))
    });
}

#[test]
fn manifest_of_an_unknown_media_type() {
    check(|t| {
        let layer = t.blob(b"layer");
        let bytes = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.example.future+json","layers":[{{"digest":"{layer}","size":5}}]}}"#
        );
        let (manifest, files) = damaged_manifest(t, bytes.as_bytes());
        Expect::codes(1, 1, 1)
            .names(t.blob_data(&manifest))
            .live(files)
            .live(bystander(t))
    });
}

#[test]
fn schema1_with_a_bad_signature_block() {
    // regsweep follows `fsLayers` and does not check JWS signatures
    // (README, verify): the layers stay and nothing is reported.
    for signatures in [
        r#""signatures":"not a list""#,
        r#""signatures":[{"header":42,"signature":null}]"#,
        r#""signatures":[]"#,
    ] {
        check(|t| {
            let a = t.blob(b"schema1 layer a");
            let b = t.blob(b"schema1 layer b");
            let bytes = format!(
                r#"{{"schemaVersion":1,"name":"app","tag":"v1","architecture":"amd64","fsLayers":[{{"blobSum":"{a}"}},{{"blobSum":"{b}"}}],"history":[{{"v1Compatibility":"{{}}"}},{{"v1Compatibility":"{{}}"}}],{signatures}}}"#
            );
            let image = t.manifest("app", Some("v1"), bytes.as_bytes(), &[a, b]);
            Expect::codes(0, 0, 0).live(image.files).live(bystander(t))
        });
    }
}

#[test]
fn file_where_a_directory_is_expected() {
    // A blob directory that is a file: the layer is not in storage for the
    // registry either; reported, the file kept.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let dir = t
            .blob_data(&image.layers[0])
            .parent()
            .unwrap()
            .to_path_buf();
        fs::remove_dir_all(&dir).unwrap();
        fs::write(&dir, b"not a directory").unwrap();
        let needed: Vec<PathBuf> = image
            .files
            .into_iter()
            .filter(|f| !f.starts_with(&dir))
            .collect();
        Expect::codes(1, 1, 1)
            .names(&dir)
            .live(needed)
            .live([dir])
            .live(bystander(t))
    });
    // A revision directory that is a file.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let dir = t
            .revision_link("app", &image.manifest)
            .parent()
            .unwrap()
            .to_path_buf();
        fs::remove_dir_all(&dir).unwrap();
        fs::write(&dir, b"not a directory").unwrap();
        let needed: Vec<PathBuf> = image
            .files
            .into_iter()
            .filter(|f| !f.starts_with(&dir))
            .collect();
        Expect::codes(1, 1, 1)
            .names(&dir)
            .live(needed)
            .live([dir])
            .live(bystander(t))
    });
    // `_layers`, `_manifests/revisions`, a tag, a tag's `current` that are
    // files: what they should hold is unknown, so the repository is kept.
    for which in ["_layers", "revisions", "tag", "current"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            t.image("app", None, "untagged");
            let repo = t.repo("app");
            let path = match which {
                "_layers" => repo.join("_layers"),
                "revisions" => repo.join("_manifests/revisions"),
                "tag" => t.tag_dir("app", "v1"),
                _ => t.tag_dir("app", "v1").join("current"),
            };
            fs::remove_dir_all(&path).unwrap();
            fs::write(&path, b"not a directory").unwrap();
            let needed: Vec<PathBuf> = image
                .files
                .into_iter()
                .filter(|f| !f.starts_with(&path))
                .collect();
            Expect::codes(1, 1, 1)
                .names(&path)
                .live(needed)
                .live([path])
                .live(bystander(t))
        });
    }
    // `repositories/` or `blobs/` a file: refused, or nothing deleted.
    check(|t| {
        let blobs = bystander(t);
        let repositories = t.v2().join("repositories");
        fs::remove_dir_all(&repositories).unwrap();
        fs::write(&repositories, b"not a directory").unwrap();
        let blobs: Vec<PathBuf> = blobs
            .into_iter()
            .filter(|f| !f.starts_with(&repositories))
            .collect();
        Expect::codes(2, 2, 2).names(&repositories).live(blobs)
    });
    check(|t| {
        let live = bystander(t);
        let blobs = t.v2().join("blobs");
        fs::remove_dir_all(&blobs).unwrap();
        fs::write(&blobs, b"not a directory").unwrap();
        let live: Vec<PathBuf> = live
            .into_iter()
            .filter(|f| !f.starts_with(&blobs))
            .collect();
        Expect::codes(1, 1, 1)
            .names(&blobs)
            .live(live)
            .live([blobs])
    });
}

#[test]
fn directory_where_a_file_is_expected() {
    for which in ["revision", "current", "data"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            let path = match which {
                "revision" => t.revision_link("app", &image.manifest),
                "current" => t.tag_current("app", "v1"),
                _ => t.blob_data(&image.layers[0]),
            };
            fs::remove_file(&path).unwrap();
            fs::create_dir_all(path.join("inside")).unwrap();
            fs::write(path.join("inside/file"), b"kept").unwrap();
            let needed: Vec<PathBuf> = image.files.into_iter().filter(|f| *f != path).collect();
            Expect::codes(1, 1, 1)
                .names(&path)
                .live(needed)
                .live([path.join("inside/file")])
                .live(bystander(t))
                .verify_args(&["--digests"])
        });
    }
}

#[test]
fn symlink_loops() {
    // In blob storage: reported, not followed, kept.
    check(|t| {
        let live = bystander(t);
        let shard = t.v2().join("blobs/sha256/ee");
        fs::create_dir_all(&shard).unwrap();
        let blob = shard.join(format!("ee{}", "0".repeat(62)));
        symlink(&blob, &blob).unwrap();
        Expect::codes(1, 1, 1).names(&blob).live(live).live([blob])
    });
    // A revision link that points at itself.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let link = t.revision_link("app", &image.manifest);
        fs::remove_file(&link).unwrap();
        symlink("link", &link).unwrap();
        let needed: Vec<PathBuf> = image.files.into_iter().filter(|f| *f != link).collect();
        Expect::codes(1, 1, 1)
            .names(&link)
            .live(needed)
            .live([link])
            .live(bystander(t))
    });
    // A loop where repositories live: the index cannot be complete; refused.
    check(|t| {
        let live = bystander(t);
        let loop_dir = t.v2().join("repositories/team");
        fs::create_dir_all(&loop_dir).unwrap();
        symlink("..", loop_dir.join("again")).unwrap();
        Expect::codes(2, 2, 2)
            .names(loop_dir.join("again"))
            .live(live)
    });
}

/// A directory next to the root that looks like blob storage full of
/// garbage: a collector that followed a link into it would delete it.
fn outside_blobs(t: &Tree) -> PathBuf {
    let outside = t.scratch().join("outside");
    for i in 0..3 {
        let bytes = format!("outside blob {i}");
        let digest = digest_of(bytes.as_bytes());
        write(
            &outside.join("ab").join(hex(&digest)).join("data"),
            bytes.as_bytes(),
        );
    }
    write(&outside.join("link"), digest_of(b"outside").as_bytes());
    outside
}

#[test]
fn symlinks_pointing_outside_the_root() {
    // A blob shard, a blob directory and a blob's data pointing outside.
    for which in ["shard", "blob", "data"] {
        check(|t| {
            let outside = outside_blobs(t);
            let live = bystander(t);
            let shards = t.v2().join("blobs/sha256");
            let path = match which {
                "shard" => shards.join("ab"),
                "blob" => shards.join("cd").join(format!("cd{}", "1".repeat(62))),
                _ => shards
                    .join("cd")
                    .join(format!("cd{}", "2".repeat(62)))
                    .join("data"),
            };
            let target = match which {
                "shard" => outside.join("ab"),
                _ => fs::read_dir(outside.join("ab"))
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .path(),
            };
            let target = if which == "data" {
                target.join("data")
            } else {
                target
            };
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            symlink(&target, &path).unwrap();
            let mut expect = Expect::codes(1, 1, 1).names(&path).live(live).live([path]);
            expect.outside = Some(outside);
            expect.verify_args(&["--digests"])
        });
    }
    // Link files pointing outside: a dead layer's link goes as a link (its
    // target untouched); a revision link is reported and its image kept.
    check(|t| {
        let outside = outside_blobs(t);
        let image = t.image("app", Some("v1"), "one");
        let dead = t.blob(b"dead layer");
        let dead_link = t.link_layer("app", &dead);
        fs::remove_file(&dead_link).unwrap();
        symlink(outside.join("link"), &dead_link).unwrap();
        let revision = t.revision_link("app", &image.manifest);
        fs::remove_file(&revision).unwrap();
        symlink(outside.join("link"), &revision).unwrap();
        let needed: Vec<PathBuf> = image.files.into_iter().filter(|f| *f != revision).collect();
        let mut expect = Expect::codes(1, 1, 1)
            .names(&revision)
            .verify_names(&dead_link)
            .live(needed)
            .live([revision])
            .live(bystander(t));
        expect.outside = Some(outside);
        expect
    });
    // A tag's `current` pointing at a directory outside whose `link` names
    // an untagged manifest: not followed. The tag's target is then unknown
    // (the registry would follow the link), so nothing it might name goes:
    // not the history's manifest, not the untagged one.
    check(|t| {
        let outside = t.scratch().join("outside-tag");
        let tagged = t.image("app", Some("v1"), "one");
        let untagged = t.image("app", None, "two");
        write(&outside.join("link"), untagged.manifest.as_bytes());
        let current = t.tag_dir("app", "v1").join("current");
        fs::remove_dir_all(&current).unwrap();
        symlink(&outside, &current).unwrap();
        let needed: Vec<PathBuf> = tagged
            .files
            .into_iter()
            .filter(|f| !f.starts_with(&current))
            .collect();
        let mut expect = Expect::codes(1, 1, 1)
            .names(&current)
            .live(needed)
            .live(untagged.files)
            .live(bystander(t));
        expect.outside = Some(outside);
        expect
    });
    // A repository that is a link to outside: refused, nothing touched.
    check(|t| {
        let outside = t.scratch().join("outside-repo");
        let elsewhere = Tree::new();
        elsewhere.image("app", Some("v1"), "one");
        fs::rename(elsewhere.repo("app"), &outside).unwrap();
        let link = t.repo("mounted");
        symlink(&outside, &link).unwrap();
        let mut expect = Expect::codes(2, 2, 2).names(&link).live(bystander(t));
        expect.outside = Some(outside);
        expect
    });
}

/// Whether the binary can be run as `nobody` here.
fn unprivileged() -> Option<u32> {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        return None;
    }
    let works = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    works.then_some(65534)
}

#[test]
fn directory_without_read_permission() {
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let user = if root {
        match unprivileged() {
            Some(uid) => Some(uid),
            None => {
                eprintln!("skipped: running as root and cannot drop privileges with setpriv");
                return;
            }
        }
    } else {
        None
    };
    for which in ["revisions", "shard", "tags"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            t.image("app", None, "two");
            let mut live = image.files;
            live.extend(bystander(t));
            let dir = match which {
                "revisions" => t.repo("app").join("_manifests/revisions/sha256"),
                "shard" => t
                    .blob_data(&image.layers[0])
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .to_path_buf(),
                _ => t.tag_dir("app", "v1"),
            };
            if let Some(uid) = user {
                // The tree belongs to the user that runs regsweep, who could
                // delete in it; only the one directory is closed.
                fs::set_permissions(t.scratch(), fs::Permissions::from_mode(0o755)).unwrap();
                let status = Command::new("chown")
                    .args(["-R", &format!("{uid}:{uid}")])
                    .arg(&t.root)
                    .status()
                    .unwrap();
                assert!(status.success());
            }
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o000)).unwrap();
            let mut expect = Expect::codes(2, 2, 2).names(&dir).live(live);
            expect.user = user;
            expect
        });
    }
}

#[test]
fn non_utf8_file_names() {
    // A tag, a blob directory entry, a layer link directory: reported, kept;
    // the JSON reports stay valid JSON.
    for which in ["tag", "blob", "layer"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            let path = match which {
                "tag" => t.repo("app").join("_manifests/tags").join(non_utf8("v")),
                "blob" => t.v2().join("blobs/sha256/ab").join(non_utf8("ab")),
                _ => t.repo("app").join("_layers/sha256").join(non_utf8("cd")),
            };
            fs::create_dir_all(&path).unwrap();
            fs::write(path.join("link"), image.manifest.as_bytes()).unwrap();
            Expect::codes(1, 1, 1)
                .names(&path)
                .live(image.files)
                .live([path.join("link")])
                .live(bystander(t))
        });
    }
    // A repository whose name is not UTF-8: it cannot be named, so it cannot
    // be collected safely: refused.
    check(|t| {
        let live = bystander(t);
        let repo = t.v2().join("repositories").join(non_utf8("team"));
        let elsewhere = t.image("tmp", Some("v1"), "one");
        fs::rename(t.repo("tmp"), &repo).unwrap();
        let mut live = live;
        live.extend(
            elsewhere
                .files
                .into_iter()
                .filter(|f| !f.starts_with(t.repo("tmp"))),
        );
        Expect::codes(2, 2, 2).names(&repo).live(live)
    });
}

#[test]
fn root_that_is_not_registry_storage() {
    /// Makes the target in a scratch directory.
    type Make = Box<dyn Fn(&Path) -> PathBuf>;
    let cases: Vec<(&str, Make)> = vec![
        (
            "empty directory",
            Box::new(|dir: &Path| {
                fs::create_dir_all(dir.join("empty")).unwrap();
                dir.join("empty")
            }),
        ),
        (
            "home-like directory",
            Box::new(|dir: &Path| {
                write(&dir.join("home/notes.txt"), b"hello");
                write(&dir.join("home/docker/readme"), b"not a registry");
                dir.join("home")
            }),
        ),
        (
            "v2 below the target",
            Box::new(|dir: &Path| {
                fs::create_dir_all(dir.join("reg/docker/registry/v2/repositories")).unwrap();
                dir.join("reg/docker/registry/v2")
            }),
        ),
        ("missing", Box::new(|dir: &Path| dir.join("nothing-here"))),
        (
            "file that is not a config",
            Box::new(|dir: &Path| {
                write(&dir.join("file.bin"), &[0xff, 0x00, 0x13]);
                dir.join("file.bin")
            }),
        ),
        (
            "config naming a missing root",
            Box::new(|dir: &Path| {
                let config = dir.join("config.yml");
                write(
                    &config,
                    format!(
                        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\n",
                        dir.join("gone").display()
                    )
                    .as_bytes(),
                );
                config
            }),
        ),
        (
            "v2 that is a file",
            Box::new(|dir: &Path| {
                write(&dir.join("flat/docker/registry/v2"), b"file");
                dir.join("flat")
            }),
        ),
    ];
    for (what, make) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let target = make(dir.path());
        let before = snapshot(dir.path());
        let shown = target.display().to_string();
        for args in [
            bad_input_support::gc_args(false),
            bad_input_support::gc_args(true),
            vec!["verify".into(), "--json".into()],
        ] {
            let mut args = args;
            args.push(target.clone().into_os_string());
            let argv: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            let r = run(&argv);
            assert_eq!(r.code, 2, "{what}: {:?}\n{}", r.args, r.stderr);
            // With --json, one object saying why; never a report.
            let report: serde_json::Value = serde_json::from_str(&r.stdout)
                .unwrap_or_else(|e| panic!("{what}: one JSON object ({e}): {}", r.stdout));
            assert_eq!(report["exit_code"], 2, "{what}: {report}");
            assert!(report["error"].is_string(), "{what}: {report}");
            assert!(report.get("candidates").is_none(), "{what}: {report}");
            let named = r.stderr.contains(&shown)
                || (what.starts_with("config")
                    && r.stderr
                        .contains(&dir.path().join("gone").display().to_string()));
            assert!(
                named,
                "{what}: {:?} does not name the path:\n{}",
                r.args, r.stderr
            );
        }
        assert_eq!(before, snapshot(dir.path()), "{what}: changed");
    }
}

#[test]
fn registry_with_no_repositories_directory() {
    // Nothing stored yet: nothing to do, nothing wrong.
    check_tree(
        || {
            let t = Tree::bare();
            fs::create_dir_all(t.v2()).unwrap();
            t
        },
        |_| Expect::codes(0, 0, 0),
    );
    // Blobs but no repositories: no manifest references them, so they are
    // garbage; verify finds nothing broken.
    check_tree(
        || {
            let t = Tree::new();
            fs::remove_dir(t.v2().join("repositories")).unwrap();
            t
        },
        |t| {
            t.blob(b"an orphan");
            Expect::codes(0, 0, 0)
        },
    );
}

#[test]
fn manifest_referencing_a_missing_layer() {
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let gone = t
            .blob_data(&image.layers[1])
            .parent()
            .unwrap()
            .to_path_buf();
        fs::remove_dir_all(&gone).unwrap();
        let needed: Vec<PathBuf> = image
            .files
            .iter()
            .filter(|f| !f.starts_with(&gone))
            .cloned()
            .collect();
        Expect::codes(1, 1, 1)
            .names(&gone)
            .live(needed)
            .live(bystander(t))
    });
    // verify names repository, tag, manifest and the missing digest.
    let t = Tree::new();
    let image = t.image("app", Some("v1"), "one");
    fs::remove_dir_all(t.blob_data(&image.layers[1]).parent().unwrap()).unwrap();
    let r = run(&[
        OsStr::new("verify"),
        OsStr::new("--json"),
        t.root.as_os_str(),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let report = r.json();
    let problem = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "missing_blob")
        .unwrap_or_else(|| panic!("no missing_blob in {report}"));
    assert_eq!(problem["repository"], "app");
    assert_eq!(problem["tags"], serde_json::json!(["v1"]));
    assert_eq!(problem["manifest"], image.manifest.as_str());
    assert_eq!(problem["digest"], image.layers[1].as_str());
    assert_eq!(
        report["broken_tags"],
        serde_json::json!([{"repository": "app", "tag": "v1"}])
    );
}

#[test]
fn blob_whose_content_does_not_match_its_name() {
    // gc does not hash blobs; verify does with --digests, and names the
    // image the bad layer breaks.
    check(|t| {
        let image = t.image("app", Some("v1"), "one");
        let data = t.blob_data(&image.layers[0]);
        fs::write(&data, b"bit rot").unwrap();
        Expect::codes(0, 0, 1)
            .verify_names(&data)
            .live(image.files)
            .live(bystander(t))
            .verify_args(&["--digests", "--threads", "2"])
    });
    let t = Tree::new();
    let image = t.image("app", Some("v1"), "one");
    fs::write(t.blob_data(&image.layers[0]), b"bit rot").unwrap();
    let plain = run(&[OsStr::new("verify"), t.root.as_os_str()]);
    assert_eq!(
        plain.code, 0,
        "without --digests nothing is hashed: {}",
        plain.stderr
    );
    let r = run(&[
        OsStr::new("verify"),
        OsStr::new("--digests"),
        OsStr::new("--json"),
        t.root.as_os_str(),
    ]);
    let report = r.json();
    assert_eq!(report["digests"]["mismatched"], 1);
    assert!(report["digests"]["mb_per_s"].as_f64().unwrap() >= 0.0);
    let problem = &report["problems"][0];
    assert_eq!(problem["kind"], "digest_mismatch");
    assert_eq!(problem["tags"], serde_json::json!(["v1"]));
    assert_eq!(problem["digest"], image.layers[0].as_str());
    assert!(
        plain.stdout.contains("No problems found"),
        "{}",
        plain.stdout
    );
    let summary = run(&[
        OsStr::new("verify"),
        OsStr::new("--digests"),
        t.root.as_os_str(),
    ]);
    assert!(summary.stdout.contains("MB/s"), "{}", summary.stdout);
}

#[test]
fn fifo_where_a_file_is_expected() {
    // Opening a FIFO for reading waits for a writer: a link file or a blob's
    // data that is one must not hang the run.
    for which in ["revision", "current", "data"] {
        check(|t| {
            let image = t.image("app", Some("v1"), "one");
            let path = match which {
                "revision" => t.revision_link("app", &image.manifest),
                "current" => t.tag_current("app", "v1"),
                _ => t.blob_data(&image.manifest),
            };
            fs::remove_file(&path).unwrap();
            let made = Command::new("mkfifo").arg(&path).status().unwrap();
            assert!(made.success());
            let needed: Vec<PathBuf> = image.files.into_iter().filter(|f| *f != path).collect();
            Expect::codes(1, 1, 1)
                .names(&path)
                .live(needed)
                .live(bystander(t))
                .verify_args(&["--digests"])
        });
    }
}
