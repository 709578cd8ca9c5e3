//! TARGET: a storage root directory, or the registry's `config.yml`.
//!
//! From a config, the storage root is `storage.filesystem.rootdirectory`
//! (default `/var/lib/registry`, as the registry's), overridden by
//! `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY` as the registry does. Any other
//! storage driver is refused: regsweep reads the filesystem directly.

use std::fs;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use crate::error::{Error, Result};
use crate::layout::{Layout, V2_SUFFIX};

/// The registry's default `rootdirectory` for the filesystem driver.
pub const DEFAULT_ROOT_DIRECTORY: &str = "/var/lib/registry";

/// Keys of the `storage` section that configure the registry, not a driver.
const STORAGE_OPTIONS: [&str; 5] = ["delete", "redirect", "cache", "maintenance", "tag"];

/// Registry environment overrides that matter for finding the storage.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `REGISTRY_STORAGE`: the driver name, overriding the config's.
    pub storage: Option<String>,
    /// `REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY`.
    pub root_directory: Option<PathBuf>,
}

impl Environment {
    /// Reads the overrides from the process environment.
    pub fn from_process() -> Environment {
        let non_empty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        Environment {
            storage: non_empty("REGISTRY_STORAGE").map(|v| v.to_string_lossy().into_owned()),
            root_directory: non_empty("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY")
                .map(PathBuf::from),
        }
    }
}

/// Resolves TARGET to the layout of a storage root, checking that it is one.
pub fn resolve(target: &Path, env: &Environment) -> Result<Layout> {
    let meta = fs::metadata(target).map_err(|e| Error::io(target, e))?;
    let root = if meta.is_dir() {
        target.to_path_buf()
    } else {
        root_from_config(target, env)?
    };
    storage_root(&root)
}

/// Reads the storage root directory out of a registry configuration file.
pub fn root_from_config(path: &Path, env: &Environment) -> Result<PathBuf> {
    let config_error = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let docs =
        YamlLoader::load_from_str(&text).map_err(|e| config_error(format!("not YAML: {e}")))?;
    let doc = docs
        .into_iter()
        .next()
        .ok_or_else(|| config_error("empty file".into()))?;
    let storage = &doc["storage"];
    let Yaml::Hash(section) = storage else {
        return Err(config_error("no `storage` section".into()));
    };
    let driver = match &env.storage {
        Some(driver) => driver.clone(),
        None => {
            let drivers: Vec<&str> = section
                .keys()
                .filter_map(Yaml::as_str)
                .filter(|k| !STORAGE_OPTIONS.contains(k))
                .collect();
            match drivers.as_slice() {
                [one] => (*one).to_owned(),
                [] => {
                    return Err(config_error(
                        "no storage driver in the `storage` section".into(),
                    ));
                }
                many => {
                    return Err(config_error(format!(
                        "more than one storage driver configured: {}",
                        many.join(", ")
                    )));
                }
            }
        }
    };
    if driver != "filesystem" {
        return Err(Error::UnsupportedDriver {
            path: path.to_path_buf(),
            driver,
        });
    }
    if let Some(root) = &env.root_directory {
        return Ok(root.clone());
    }
    match &storage["filesystem"]["rootdirectory"] {
        Yaml::String(root) if !root.is_empty() => Ok(PathBuf::from(root)),
        Yaml::BadValue | Yaml::Null => Ok(PathBuf::from(DEFAULT_ROOT_DIRECTORY)),
        other => Err(config_error(format!(
            "storage.filesystem.rootdirectory is not a path: {other:?}"
        ))),
    }
}

/// Checks that `root` holds `docker/registry/v2` and returns its layout,
/// with the root made absolute.
pub fn storage_root(root: &Path) -> Result<Layout> {
    let not_storage = |reason: String| Error::NotStorage {
        path: root.to_path_buf(),
        reason,
    };
    let root = fs::canonicalize(root).map_err(|e| Error::io(root, e))?;
    refuse_linked_v2(&root)?;
    let layout = Layout::new(&root);
    match fs::metadata(layout.v2()) {
        Ok(meta) if meta.is_dir() => Ok(layout),
        Ok(_) => Err(not_storage(format!(
            "{} is not a directory",
            layout.v2().display()
        ))),
        Err(_) => {
            let looks_like_v2 = ["blobs", "repositories"]
                .iter()
                .any(|d| root.join(d).is_dir());
            let hint = if looks_like_v2 {
                format!(
                    "; this looks like the `{}` directory itself: pass the directory that contains `docker/`",
                    V2_SUFFIX.join("/")
                )
            } else {
                String::new()
            };
            Err(not_storage(format!(
                "no `{}` directory{hint}",
                V2_SUFFIX.join("/")
            )))
        }
    }
}

/// Refuses a symbolic link at `docker`, `docker/registry` or
/// `docker/registry/v2` below the (canonical) `root`. Everything below is
/// read and deleted without following links; a link here would send the
/// sweep, the lock and the trash's checks into another tree, so the operator
/// passes the storage root the link leads to instead.
fn refuse_linked_v2(root: &Path) -> Result<()> {
    let mut dir = root.to_path_buf();
    for name in V2_SUFFIX {
        dir.push(name);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::NotStorage {
                    reason: linked_v2_reason(root),
                    path: dir,
                });
            }
            Ok(_) => {}
            // What is missing is said by the caller.
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// Why a link on the way to `root`'s `docker/registry/v2` is
/// refused, and what to pass instead.
fn linked_v2_reason(root: &Path) -> String {
    let v2 = V2_SUFFIX.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    let suffix = V2_SUFFIX.join("/");
    let lead = format!(
        "a symbolic link on the way to `{suffix}`; regsweep follows no link inside the storage"
    );
    let Ok(resolved) = fs::canonicalize(&v2) else {
        return format!("{lead}, and this one leads nowhere readable");
    };
    let names: Vec<&std::ffi::OsStr> = resolved.iter().collect();
    let holds_v2 = names.len() > V2_SUFFIX.len()
        && names[names.len() - V2_SUFFIX.len()..]
            .iter()
            .zip(V2_SUFFIX)
            .all(|(a, b)| *a == b);
    match resolved.ancestors().nth(V2_SUFFIX.len()) {
        Some(storage) if holds_v2 => format!(
            "{lead}: pass the storage root it resolves to instead: {}",
            storage.display()
        ),
        _ => format!(
            "{lead}; it resolves to {}, which is not the `{suffix}` of any storage root: pass a directory whose `{suffix}` is a real directory",
            resolved.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yml");
        fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn reads_rootdirectory_in_block_and_flow_style() {
        let (_d, path) = config(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /srv/reg\n  delete:\n    enabled: true\n",
        );
        assert_eq!(
            root_from_config(&path, &Environment::default()).unwrap(),
            PathBuf::from("/srv/reg")
        );
        let (_d, path) = config(
            "storage:\n  filesystem: {rootdirectory: /tmp/x/data}\n  delete: {enabled: true}\n  maintenance: {readonly: {enabled: true}}\n",
        );
        assert_eq!(
            root_from_config(&path, &Environment::default()).unwrap(),
            PathBuf::from("/tmp/x/data")
        );
    }

    #[test]
    fn filesystem_without_rootdirectory_uses_the_registry_default() {
        let (_d, path) =
            config("storage:\n  filesystem: {}\n  cache: {blobdescriptor: inmemory}\n");
        assert_eq!(
            root_from_config(&path, &Environment::default()).unwrap(),
            PathBuf::from(DEFAULT_ROOT_DIRECTORY)
        );
    }

    #[test]
    fn environment_overrides_the_config_as_the_registry_does() {
        let (_d, path) = config("storage:\n  filesystem: {rootdirectory: /a}\n");
        let env = Environment {
            storage: None,
            root_directory: Some(PathBuf::from("/b")),
        };
        assert_eq!(root_from_config(&path, &env).unwrap(), PathBuf::from("/b"));
        let env = Environment {
            storage: Some("s3".into()),
            root_directory: None,
        };
        assert!(
            matches!(root_from_config(&path, &env), Err(Error::UnsupportedDriver { driver, .. }) if driver == "s3")
        );
    }

    #[test]
    fn other_drivers_and_broken_configs_are_refused_naming_the_file() {
        let (_d, path) = config("storage:\n  s3: {bucket: b}\n  delete: {enabled: true}\n");
        let err = root_from_config(&path, &Environment::default()).unwrap_err();
        assert!(matches!(&err, Error::UnsupportedDriver { driver, .. } if driver == "s3"));
        assert!(err.to_string().starts_with(&path.display().to_string()));
        let (_d, path) = config("version: 0.1\nhttp: {addr: :5000}\n");
        assert!(matches!(
            root_from_config(&path, &Environment::default()),
            Err(Error::Config { .. })
        ));
        let (_d, path) = config("storage: [unclosed\n");
        assert!(matches!(
            root_from_config(&path, &Environment::default()),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn storage_root_must_hold_docker_registry_v2() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            storage_root(dir.path()),
            Err(Error::NotStorage { .. })
        ));
        fs::create_dir_all(dir.path().join("repositories")).unwrap();
        let err = storage_root(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("pass the directory that contains `docker/`"),
            "{err}"
        );
        fs::create_dir_all(dir.path().join("docker/registry/v2")).unwrap();
        assert!(storage_root(dir.path()).is_ok());
    }

    #[test]
    fn links_at_docker_registry_or_v2_are_refused_naming_the_root_to_pass() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir_all(real.join("docker/registry/v2")).unwrap();
        let real = fs::canonicalize(&real).unwrap();
        let linked = dir.path().join("linked");
        for (depth, name) in V2_SUFFIX.iter().enumerate() {
            let _ = fs::remove_dir_all(&linked);
            let above: PathBuf = V2_SUFFIX[..depth].iter().collect();
            fs::create_dir_all(linked.join(&above)).unwrap();
            let link = linked.join(&above).join(name);
            std::os::unix::fs::symlink(real.join(&above).join(name), &link).unwrap();
            let err = storage_root(&linked).unwrap_err();
            let link = fs::canonicalize(&linked).unwrap().join(&above).join(name);
            assert!(
                matches!(&err, Error::NotStorage { path, .. } if *path == link),
                "{err}"
            );
            let err = err.to_string();
            assert!(
                err.ends_with(&format!("resolves to instead: {}", real.display())),
                "{err}"
            );
        }
        // A link to a `v2` that is not at `docker/registry/v2` of anything.
        let _ = fs::remove_dir_all(&linked);
        fs::create_dir_all(linked.join("docker/registry")).unwrap();
        fs::create_dir(dir.path().join("lone")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("lone"), linked.join("docker/registry/v2"))
            .unwrap();
        let err = storage_root(&linked).unwrap_err().to_string();
        assert!(err.contains("not the `docker/registry/v2` of any"), "{err}");
        // TARGET itself may be a link.
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        assert_eq!(storage_root(&alias).unwrap().root(), real);
    }
}
