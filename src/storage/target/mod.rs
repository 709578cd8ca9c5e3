//! TARGET: a storage root directory, or the registry's `config.yml`.
//!
//! A config is read as the registry reads it: YAML as gopkg.in/yaml.v2
//! decodes it (anchors, aliases and merge keys, with its bound on alias
//! expansion; see `target/yaml.rs`), the `storage` section as distribution's
//! `Storage` type unmarshals it (a map of one driver to its parameters beside
//! `maintenance`, `cache`, `delete`, `redirect` and `tag`, or a bare driver
//! name), then the `REGISTRY_STORAGE*` environment overrides applied as its
//! configuration parser applies them. The storage root is the filesystem
//! driver's `rootdirectory`, `/var/lib/registry` when it has none, as the
//! driver's own default. What cannot be read the registry's way is refused,
//! naming the key: a root is never guessed.

mod yaml;

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::storage::Storage;
use crate::storage::layout::{Layout, V2_SUFFIX};
use crate::storage::s3::{self, S3Storage, S3Target};

use yaml::{Decoder, Kind, Map, Scalar, Value};

/// The registry's default `rootdirectory` for the filesystem driver.
pub const DEFAULT_ROOT_DIRECTORY: &str = "/var/lib/registry";

/// Keys of the `storage` section that configure the registry, not a driver.
/// (`tag` is one from distribution 3.0 on; 2.8 refuses it as a second driver.)
const STORAGE_OPTIONS: [&str; 5] = ["delete", "redirect", "cache", "maintenance", "tag"];

/// The top-level keys the registry decodes (its `Configuration` struct's
/// fields); others it skips unread, and so does regsweep.
const CONFIGURATION_FIELDS: [&str; 16] = [
    "version",
    "log",
    "loglevel",
    "storage",
    "auth",
    "middleware",
    "reporting",
    "http",
    "notifications",
    "redis",
    "health",
    "catalog",
    "proxy",
    "compatibility",
    "validation",
    "policy",
];

/// The registry's environment overrides of its `storage` section
/// (`REGISTRY_STORAGE`, `REGISTRY_STORAGE_<KEY>_...`).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// Name and value, sorted by name as the registry applies them (so
    /// `REGISTRY_STORAGE` comes before the variables below it).
    vars: Vec<(String, OsString)>,
}

impl Environment {
    /// Reads the overrides from the process environment.
    pub fn from_process() -> Environment {
        Environment::from_vars(
            std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value))),
        )
    }

    /// The overrides among `vars` (name, value); other variables are left out.
    pub fn from_vars<N, V>(vars: impl IntoIterator<Item = (N, V)>) -> Environment
    where
        N: Into<String>,
        V: Into<OsString>,
    {
        let mut vars: Vec<(String, OsString)> = vars
            .into_iter()
            .map(|(n, v)| (n.into(), v.into()))
            .filter(|(name, _)| name == "REGISTRY_STORAGE" || name.starts_with("REGISTRY_STORAGE_"))
            .collect();
        vars.sort();
        Environment { vars }
    }
}

/// What regsweep knows of the registry from its `config.yml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// The configuration file, as given.
    pub path: PathBuf,
    /// The filesystem driver's root directory (before it is checked to
    /// hold registry storage); empty for the s3 driver.
    pub root: PathBuf,
    /// The s3 driver's bucket and how to reach it.
    pub s3: Option<S3Target>,
    /// `storage.maintenance.readonly.enabled`: the registry refuses pushes.
    pub readonly: bool,
    /// `storage.cache.blobdescriptor` (or its older name `layerinfo`) as
    /// written: `inmemory`, `redis`, or text the registry ignores; `None`
    /// when there is none.
    pub blob_descriptor_cache: Option<String>,
}

/// A resolved TARGET.
#[derive(Debug, Clone)]
pub struct Target {
    /// The storage.
    pub storage: Storage,
    /// The registry's configuration, when TARGET was its `config.yml`.
    pub config: Option<RegistryConfig>,
}

/// Resolves TARGET to the layout of a storage root on a filesystem,
/// checking that it is one; `command` names what refuses a bucket.
pub fn resolve(target: &Path, env: &Environment, command: &str) -> Result<Layout> {
    match resolve_target(target, env)?.storage {
        Storage::Filesystem(layout) => Ok(layout),
        Storage::S3(bucket) => Err(Error::Unsupported {
            path: PathBuf::from(bucket.target().to_string()),
            what: format!("`{command}` on object storage"),
        }),
    }
}

/// Resolves TARGET: a storage root directory, `s3://bucket[/root]`, or a
/// `config.yml` whose storage is read as the registry reads it.
pub fn resolve_target(target: &Path, env: &Environment) -> Result<Target> {
    if let Some(url) = target.to_str().filter(|t| s3::config::is_s3_url(t)) {
        let bucket = S3Target::from_url(url, |name| std::env::var(name).ok())?;
        return Ok(Target {
            storage: open_bucket(bucket)?,
            config: None,
        });
    }
    let meta = fs::metadata(target).map_err(|e| Error::io(target, e))?;
    if meta.is_dir() {
        return Ok(Target {
            storage: Storage::Filesystem(storage_root(target)?),
            config: None,
        });
    }
    let config = read_config(target, env)?;
    let storage = match &config.s3 {
        Some(bucket) => open_bucket(bucket.clone())?,
        None => Storage::Filesystem(storage_root(&config.root)?),
    };
    Ok(Target {
        storage,
        config: Some(config),
    })
}

fn open_bucket(target: S3Target) -> Result<Storage> {
    let bucket = S3Storage::open(target, s3::DEFAULT_CONCURRENCY)?;
    Ok(Storage::S3(Arc::new(bucket)))
}

/// Reads the storage root directory out of a registry configuration file.
pub fn root_from_config(path: &Path, env: &Environment) -> Result<PathBuf> {
    read_config(path, env).map(|c| c.root)
}

/// Reads a registry configuration file, with `env`'s overrides.
pub fn read_config(path: &Path, env: &Environment) -> Result<RegistryConfig> {
    let config_error = |reason: String| Error::Config {
        path: path.to_path_buf(),
        reason,
    };
    let text = fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut storage = storage_from_file(&text).map_err(config_error)?;
    apply_environment(&mut storage, env).map_err(config_error)?;
    let Some(storage) = storage else {
        return Err(config_error("no `storage` section".into()));
    };
    let drivers: Vec<&str> = storage
        .keys()
        .filter(|k| !STORAGE_OPTIONS.contains(k))
        .collect();
    let driver = match drivers.as_slice() {
        [one] => *one,
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
    };
    let (root, s3) = match driver {
        "filesystem" => (
            root_directory(storage.get("filesystem")).map_err(config_error)?,
            None,
        ),
        "s3" => {
            let params = storage.get("s3").flatten();
            let get = |name: &str| params?.get_str(name)?.as_go_string();
            let bucket = S3Target::from_registry(get).map_err(config_error)?;
            (PathBuf::new(), Some(bucket))
        }
        _ => {
            return Err(Error::UnsupportedDriver {
                path: path.to_path_buf(),
                driver: driver.to_owned(),
            });
        }
    };
    Ok(RegistryConfig {
        path: path.to_path_buf(),
        root,
        s3,
        readonly: readonly(storage.get("maintenance")).map_err(config_error)?,
        blob_descriptor_cache: blob_descriptor_cache(&storage).map_err(config_error)?,
    })
}

/// The `storage` section: driver or option name → parameters (`None` for
/// a Go nil map), as distribution's `Storage` (`map[string]Parameters`).
#[derive(Debug, Default)]
struct StorageSection {
    entries: Vec<(String, Option<Map>)>,
}

impl StorageSection {
    fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// The parameters of `key`: `None` when absent, `Some(None)` when nil.
    fn get(&self, key: &str) -> Option<Option<&Map>> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    fn insert(&mut self, key: String, params: Option<Map>) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = params,
            None => self.entries.push((key, params)),
        }
    }
}

/// The `storage` section of a config text, before environment overrides;
/// `None` when there is none (or it is null).
fn storage_from_file(text: &str) -> Result<Option<StorageSection>, String> {
    let doc = yaml::parse(text)?;
    let mut decoder = Decoder::new(&doc);
    let mut storage = None;
    for (field, node) in decoder.top_level()? {
        if !CONFIGURATION_FIELDS.contains(&field.as_str()) {
            continue;
        }
        // Every field the registry decodes counts towards its alias bound.
        let value = decoder.decode(node)?;
        if field == "storage" {
            storage = storage_from_value(value, "storage")?;
        }
    }
    Ok(storage)
}

/// Unmarshals `value` as distribution's `Storage` does: a map of names to
/// parameter maps (with at most one driver), or a bare driver name.
fn storage_from_value(value: Value, key: &str) -> Result<Option<StorageSection>, String> {
    match value {
        Value::Map(map) => {
            let mut storage = StorageSection::default();
            for (name, params) in map.entries {
                let name = name
                    .as_go_string()
                    .ok_or_else(|| format!("`{key}` has a key that is a sequence or a mapping"))?;
                let params = parameters(params, &format!("{key}.{name}"))?;
                storage.insert(name, params);
            }
            let drivers: Vec<&str> = storage
                .keys()
                .filter(|k| !STORAGE_OPTIONS.contains(k))
                .collect();
            if drivers.len() > 1 {
                return Err(format!(
                    "more than one storage driver configured: {}",
                    drivers.join(", ")
                ));
            }
            Ok(Some(storage))
        }
        Value::Scalar(s) if s.kind == Kind::Null => Ok(None),
        Value::Scalar(s) => Ok(Some(StorageSection {
            entries: vec![(s.text, Some(Map::go_parameters()))],
        })),
        Value::Seq(_) => Err(format!(
            "`{key}` is a sequence; expected a map of a storage driver to its parameters"
        )),
    }
}

/// A driver's or an option's parameters, as a Go `Parameters` map.
fn parameters(value: Value, key: &str) -> Result<Option<Map>, String> {
    match value {
        Value::Map(map) => {
            let mut params = Map::go_parameters();
            for (name, v) in map.entries {
                let name = name
                    .as_go_string()
                    .ok_or_else(|| format!("`{key}` has a key that is a sequence or a mapping"))?;
                params.insert(go_string(name), v);
            }
            Ok(Some(params))
        }
        v if v.is_null() => Ok(None),
        _ => Err(format!("`{key}` is not a map of parameters")),
    }
}

fn go_string(text: String) -> Value {
    Value::Scalar(Scalar {
        text,
        kind: Kind::Str,
    })
}

/// Applies the `REGISTRY_STORAGE*` overrides as distribution's
/// configuration parser does: in name order, each `_`-separated part
/// matching an existing key in any case (or making a new, lower-case one),
/// the value read as YAML. Below a map the YAML file made
/// (`map[interface{}]interface{}`), the parser goes no deeper and the
/// variable is ignored.
fn apply_environment(
    storage: &mut Option<StorageSection>,
    env: &Environment,
) -> Result<(), String> {
    for (name, value) in &env.vars {
        let value = value
            .to_str()
            .ok_or_else(|| format!("environment variable {name} is not UTF-8"))?;
        let parse = |text: &str| {
            yaml::decode_text(text).map_err(|e| format!("environment variable {name}: {e}"))
        };
        let path: Vec<&str> = name.split('_').skip(2).collect();
        if path.is_empty() {
            // REGISTRY_STORAGE replaces the whole section.
            *storage = storage_from_value(parse(value)?, name)?;
            continue;
        }
        let storage = storage.get_or_insert_with(StorageSection::default);
        let (first, rest) = (path[0], &path[1..]);
        let existing = match rest {
            [] => None,
            _ => storage
                .entries
                .iter_mut()
                .find(|(k, _)| k.to_uppercase() == first)
                .and_then(|(_, params)| params.as_mut()),
        };
        match existing {
            Some(params) => overwrite_map(params, rest, value, &parse)?,
            None => {
                let mut params = Map::go_parameters();
                if rest.is_empty() {
                    // A parameters map read from YAML; null leaves it empty.
                    if let Some(read) = parameters(parse(value)?, name)? {
                        params = read;
                    }
                } else {
                    overwrite_map(&mut params, rest, value, &parse)?;
                }
                storage.insert(first.to_lowercase(), Some(params));
            }
        }
    }
    Ok(())
}

/// Overwrites `path` below a `map[string]interface{}` with `value`.
fn overwrite_map(
    map: &mut Map,
    path: &[&str],
    value: &str,
    parse: &dyn Fn(&str) -> Result<Value, String>,
) -> Result<(), String> {
    if !map.string_keys {
        return Ok(());
    }
    let (first, rest) = (path[0], &path[1..]);
    if !rest.is_empty() {
        let existing = map
            .entries
            .iter_mut()
            .find(|(k, _)| k.as_go_string().is_some_and(|k| k.to_uppercase() == first));
        if let Some((_, v)) = existing {
            match v {
                v if v.is_null() => {}
                Value::Map(inner) => return overwrite_map(inner, rest, value, parse),
                // A scalar or a sequence: nothing to go into.
                _ => return Ok(()),
            }
        }
    }
    let new = if rest.is_empty() {
        parse(value)?
    } else {
        let mut inner = Map::go_parameters();
        overwrite_map(&mut inner, rest, value, parse)?;
        Value::Map(inner)
    };
    map.insert(go_string(first.to_lowercase()), new);
    Ok(())
}

/// The filesystem driver's root directory, given its parameters.
fn root_directory(params: Option<Option<&Map>>) -> Result<PathBuf, String> {
    const KEY: &str = "storage.filesystem.rootdirectory";
    let Some(root) = params.flatten().and_then(|p| p.get_str("rootdirectory")) else {
        return Ok(PathBuf::from(DEFAULT_ROOT_DIRECTORY));
    };
    match root {
        Value::Scalar(Scalar {
            text,
            kind: Kind::Str,
        }) if text.starts_with('/') => Ok(PathBuf::from(text)),
        Value::Scalar(Scalar {
            text,
            kind: Kind::Str,
        }) if !text.is_empty() => Err(format!(
            "`{KEY}` is the relative path {text:?}: the registry resolves it from its own working directory, which regsweep cannot know; give the storage directory as TARGET"
        )),
        other => Err(format!(
            "`{KEY}` is not an absolute path as the registry would read it: {}",
            describe(other)
        )),
    }
}

/// `storage.maintenance.readonly.enabled`, as the registry reads it: a
/// `readonly` that is not a map from YAML, or an `enabled` that is not a
/// boolean, stops the registry from starting, and is refused here.
fn readonly(maintenance: Option<Option<&Map>>) -> Result<bool, String> {
    const KEY: &str = "storage.maintenance.readonly";
    let Some(readonly) = maintenance.flatten().and_then(|m| m.get_str("readonly")) else {
        return Ok(false);
    };
    let Value::Map(readonly) = readonly else {
        return Err(format!(
            "`{KEY}` must be a map such as {{enabled: true}} (the registry would not start): {}",
            describe(readonly)
        ));
    };
    if readonly.string_keys {
        return Err(format!(
            "`{KEY}` is made by environment variables below it (REGISTRY_STORAGE_MAINTENANCE_READONLY_...), which the registry cannot read (it would not start); set REGISTRY_STORAGE_MAINTENANCE_READONLY='{{enabled: true}}' instead"
        ));
    }
    match readonly.get_str("enabled") {
        None => Ok(false),
        Some(Value::Scalar(Scalar {
            kind: Kind::Bool(enabled),
            ..
        })) => Ok(*enabled),
        Some(other) => Err(format!(
            "`{KEY}.enabled` is not a boolean (the registry would not start): {}",
            describe(other)
        )),
    }
}

/// `storage.cache.blobdescriptor`, or its older name `layerinfo`.
fn blob_descriptor_cache(storage: &StorageSection) -> Result<Option<String>, String> {
    let Some(cache) = storage.get("cache") else {
        return Ok(None);
    };
    let cache = cache.map(|c| (c.get_str("blobdescriptor"), c.get_str("layerinfo")));
    let (key, value) = match cache {
        Some((Some(v), _)) => ("storage.cache.blobdescriptor", v),
        Some((None, Some(v))) => ("storage.cache.layerinfo", v),
        _ => return Ok(None),
    };
    match value {
        v if v.is_null() => Ok(None),
        Value::Scalar(s) => Ok(Some(s.text.clone())),
        other => Err(format!("`{key}` is not a name: {}", describe(other))),
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Scalar(Scalar {
            kind: Kind::Null, ..
        }) => "null".into(),
        Value::Scalar(Scalar {
            text,
            kind: Kind::Bool(_),
        }) => format!("the boolean {text}"),
        Value::Scalar(Scalar { text, .. }) => format!("the string {text:?}"),
        Value::Seq(_) => "a sequence".into(),
        Value::Map(_) => "a map".into(),
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
        let env = Environment::from_vars([("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/b")]);
        assert_eq!(root_from_config(&path, &env).unwrap(), PathBuf::from("/b"));
        let env = Environment::from_vars([("REGISTRY_STORAGE", "gcs")]);
        assert!(
            matches!(root_from_config(&path, &env), Err(Error::UnsupportedDriver { driver, .. }) if driver == "gcs")
        );
        // The s3 driver's section, with no bucket once REGISTRY_STORAGE replaced it.
        let env = Environment::from_vars([("REGISTRY_STORAGE", "s3")]);
        assert!(
            matches!(read_config(&path, &env), Err(Error::Config { reason, .. }) if reason.contains("storage.s3.bucket"))
        );
        // REGISTRY_STORAGE replaces the section (its root too); the more
        // specific variable is applied after it.
        let env = Environment::from_vars([("REGISTRY_STORAGE", "filesystem")]);
        assert_eq!(
            root_from_config(&path, &env).unwrap(),
            PathBuf::from(DEFAULT_ROOT_DIRECTORY)
        );
        let env = Environment::from_vars([
            ("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/c"),
            ("REGISTRY_STORAGE", "filesystem"),
            ("UNRELATED", "x"),
        ]);
        assert_eq!(root_from_config(&path, &env).unwrap(), PathBuf::from("/c"));
        // The environment alone can configure the storage.
        let (_d, bare) = config("version: 0.1\n");
        let env = Environment::from_vars([("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "/d")]);
        assert_eq!(root_from_config(&bare, &env).unwrap(), PathBuf::from("/d"));
        // An exported but empty variable is null to the registry: no root.
        let env = Environment::from_vars([("REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY", "")]);
        let err = root_from_config(&path, &env).unwrap_err().to_string();
        assert!(err.contains("storage.filesystem.rootdirectory"), "{err}");
    }

    fn read(text: &str) -> Result<RegistryConfig> {
        let (_d, path) = config(text);
        read_config(&path, &Environment::default())
    }

    fn refusal(text: &str) -> String {
        match read(text) {
            Err(e @ Error::Config { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn merge_key_gives_the_merged_rootdirectory() {
        let config = read(
            "defaults: &fs\n  rootdirectory: /srv/merged\nstorage:\n  filesystem:\n    <<: *fs\n  delete: {enabled: true}\n",
        )
        .unwrap();
        assert_eq!(config.root, PathBuf::from("/srv/merged"));
        // A merge at the storage level, and at the top level.
        let config =
            read("base: &s\n  filesystem: {rootdirectory: /srv/s}\nstorage:\n  <<: *s\n").unwrap();
        assert_eq!(config.root, PathBuf::from("/srv/s"));
        let config =
            read("base: &top\n  storage: {filesystem: {rootdirectory: /srv/top}}\n<<: *top\n")
                .unwrap();
        assert_eq!(config.root, PathBuf::from("/srv/top"));
    }

    #[test]
    fn merge_precedence_is_yaml_v2s() {
        // In a sequence of maps, the earlier map wins.
        let config = read(
            "a: &a {rootdirectory: /first}\nb: &b {rootdirectory: /second}\nstorage:\n  filesystem:\n    <<: [*a, *b]\n",
        )
        .unwrap();
        assert_eq!(config.root, PathBuf::from("/first"));
        // A key after the merge wins over it; a merge after a key wins over
        // that key (yaml.v2 applies them in order; registry 2.8.2 uses
        // /merged-after here).
        let config = read(
            "storage:\n  filesystem:\n    <<: {rootdirectory: /merged}\n    rootdirectory: /explicit\n",
        )
        .unwrap();
        assert_eq!(config.root, PathBuf::from("/explicit"));
        let config = read(
            "storage:\n  filesystem:\n    rootdirectory: /explicit\n    <<: {rootdirectory: /merged-after}\n",
        )
        .unwrap();
        assert_eq!(config.root, PathBuf::from("/merged-after"));
    }

    /// A billion-laughs document: nine levels of ten aliases each.
    fn alias_bomb(under: &str) -> String {
        let mut text =
            String::from("lol:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(",");
            text.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
        }
        text.push_str(under);
        text
    }

    #[test]
    fn alias_bomb_is_refused_quickly() {
        let text = alias_bomb("storage:\n  filesystem:\n    rootdirectory: /srv\n    x: *a8\n");
        assert!(text.len() < 600, "a bomb of {} bytes", text.len());
        let started = std::time::Instant::now();
        let err = refusal(&text);
        assert!(err.contains("excessive aliasing"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // Under a key the registry does not read, it is not expanded, as
        // the registry does not expand it.
        let config = read(&alias_bomb(
            "storage:\n  filesystem: {rootdirectory: /srv}\n",
        ))
        .unwrap();
        assert_eq!(config.root, PathBuf::from("/srv"));
    }

    #[test]
    fn what_the_registry_reads_differently_is_refused_naming_the_key() {
        for (text, key) in [
            (
                "storage:\n  filesystem: {rootdirectory: data}\n",
                "storage.filesystem.rootdirectory",
            ),
            (
                "storage:\n  filesystem: {rootdirectory: ~}\n",
                "storage.filesystem.rootdirectory",
            ),
            (
                "storage:\n  filesystem: {rootdirectory: [/a]}\n",
                "storage.filesystem.rootdirectory",
            ),
            (
                "storage:\n  filesystem: {rootdirectory: ''}\n",
                "storage.filesystem.rootdirectory",
            ),
            ("storage:\n  filesystem: /srv\n", "storage.filesystem"),
            (
                "storage:\n  filesystem: {}\n  maintenance: {readonly: true}\n",
                "storage.maintenance.readonly",
            ),
            (
                "storage:\n  filesystem: {}\n  maintenance: {readonly: {enabled: 'true'}}\n",
                "storage.maintenance.readonly.enabled",
            ),
            (
                "storage:\n  filesystem: {}\n  cache: {blobdescriptor: [a]}\n",
                "storage.cache.blobdescriptor",
            ),
        ] {
            let err = refusal(text);
            assert!(err.contains(&format!("`{key}`")), "{text}: {err}");
        }
        // Keys are case-sensitive: `Storage` is not the storage section.
        assert!(
            refusal("Storage:\n  filesystem: {rootdirectory: /srv}\n").contains("no `storage`")
        );
        assert!(refusal("storage:\n  filesystem: {}\n  s3: {}\n").contains("more than one"));
        assert!(refusal("storage:\n  filesystem: {<<: 1}\n").contains("merge"));
        // A bare driver name is the driver with no parameters.
        assert_eq!(
            read("storage: filesystem\n").unwrap().root,
            PathBuf::from(DEFAULT_ROOT_DIRECTORY)
        );
    }

    #[test]
    fn readonly_and_cache_are_read_as_the_registry_reads_them() {
        let read_back = read("storage:\n  filesystem: {rootdirectory: /srv}\n").unwrap();
        assert!(!read_back.readonly);
        assert_eq!(read_back.blob_descriptor_cache, None);
        for (enabled, expected) in [
            ("true", true),
            ("yes", true),
            ("on", true),
            ("y", true),
            ("false", false),
            ("off", false),
        ] {
            let read_back = read(&format!(
                "storage:\n  filesystem: {{rootdirectory: /srv}}\n  maintenance:\n    readonly:\n      enabled: {enabled}\n"
            ))
            .unwrap();
            assert_eq!(read_back.readonly, expected, "{enabled}");
        }
        let read_back = read(
            "storage:\n  filesystem: {rootdirectory: /srv}\n  maintenance: {readonly: {}}\n  cache: {blobdescriptor: inmemory}\n",
        )
        .unwrap();
        assert!(!read_back.readonly);
        assert_eq!(read_back.blob_descriptor_cache.as_deref(), Some("inmemory"));
        let read_back =
            read("storage:\n  filesystem: {rootdirectory: /srv}\n  cache: {layerinfo: redis}\n")
                .unwrap();
        assert_eq!(read_back.blob_descriptor_cache.as_deref(), Some("redis"));

        // REGISTRY_STORAGE_MAINTENANCE_READONLY reaches it; a variable below
        // it is ignored under a readonly map from the file, and stops the
        // registry where there is none (as registry 2.8.2 does).
        let (_d, path) = config(
            "storage:\n  filesystem: {rootdirectory: /srv}\n  maintenance: {readonly: {enabled: false}}\n",
        );
        let env =
            Environment::from_vars([("REGISTRY_STORAGE_MAINTENANCE_READONLY", "{enabled: true}")]);
        assert!(read_config(&path, &env).unwrap().readonly);
        let env =
            Environment::from_vars([("REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED", "true")]);
        assert!(!read_config(&path, &env).unwrap().readonly);
        let (_d, path) = config("storage:\n  filesystem: {rootdirectory: /srv}\n");
        assert!(matches!(
            read_config(&path, &env),
            Err(Error::Config { .. })
        ));
    }

    #[test]
    fn other_drivers_and_broken_configs_are_refused_naming_the_file() {
        let (_d, path) = config("storage:\n  azure: {container: b}\n  delete: {enabled: true}\n");
        let err = root_from_config(&path, &Environment::default()).unwrap_err();
        assert!(matches!(&err, Error::UnsupportedDriver { driver, .. } if driver == "azure"));
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
    fn s3_driver_parameters_and_their_overrides_are_read_as_the_registry_reads_them() {
        let (_d, path) = config(
            "defaults: &s3\n  region: eu-west-1\n  bucket: images\nstorage:\n  s3:\n    <<: *s3\n    rootdirectory: /registry\n    secure: false\n    regionendpoint: minio.local:9000\n    secretkey: from-file\n",
        );
        let env = Environment::from_vars([("REGISTRY_STORAGE_S3_SECRETKEY", "from-env")]);
        let config = read_config(&path, &env).unwrap();
        let s3 = config.s3.expect("an s3 target");
        assert_eq!(s3.bucket, "images");
        assert_eq!(s3.region.as_deref(), Some("eu-west-1"));
        assert_eq!(s3.root, "registry");
        assert_eq!(s3.endpoint.as_deref(), Some("http://minio.local:9000"));
        assert!(s3.allow_http);
        assert_eq!(s3.secret_key.as_ref().map(|k| k.reveal()), Some("from-env"));
        assert!(!format!("{s3:?}").contains("from-env"));
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
