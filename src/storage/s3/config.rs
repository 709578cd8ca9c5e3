//! Where the bucket is and how to reach it: from an `s3://bucket/root`
//! TARGET with the usual AWS environment, or from the registry's own
//! `storage.s3` parameters, read as distribution's s3 driver reads them.

use std::fmt;
use std::path::PathBuf;

use crate::error::Error;

/// A secret: never printed, in `Debug` either.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }

    /// The secret itself, for the client only.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A bucket holding registry storage, and how to reach it. Unset fields
/// come from the AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_REGION`, …,
/// instance and container credentials).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Target {
    /// The bucket.
    pub bucket: String,
    /// The registry's `rootdirectory`, without leading or trailing `/`
    /// (the driver trims them): keys start with `<root>/docker/registry/v2/`.
    pub root: String,
    /// The region.
    pub region: Option<String>,
    /// An endpoint other than AWS's (`regionendpoint`): MinIO, Ceph RGW…
    pub endpoint: Option<String>,
    /// The access key id.
    pub access_key: Option<String>,
    /// The secret access key.
    pub secret_key: Option<Secret>,
    /// A session token.
    pub session_token: Option<Secret>,
    /// The endpoint is plain HTTP (`secure: false`, or an `http://` endpoint).
    pub allow_http: bool,
    /// Certificates are not verified (`skipverify: true`).
    pub skip_verify: bool,
    /// Read from the registry's configuration: its `regionendpoint` (or
    /// none) is the endpoint, whatever `AWS_ENDPOINT_URL` says, as the
    /// registry's driver ignores that variable.
    pub from_registry_config: bool,
}

impl fmt::Display for S3Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}", self.bucket)?;
        if !self.root.is_empty() {
            write!(f, "/{}", self.root)?;
        }
        Ok(())
    }
}

/// `s3://BUCKET[/PATH]` read into the bucket and the path (without its
/// leading and trailing `/`); `None` when it is not an `s3://` address.
pub(crate) fn split_s3_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((bucket, path.trim_matches('/')))
}

/// Whether TARGET names a bucket rather than a path.
pub fn is_s3_url(target: &str) -> bool {
    target.starts_with("s3://")
}

impl S3Target {
    /// Reads `s3://bucket[/rootdirectory]`; the endpoint comes from
    /// `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` when set.
    pub fn from_url(url: &str, env: impl Fn(&str) -> Option<String>) -> Result<S3Target, Error> {
        let invalid = |reason: &str| Error::NotStorage {
            path: PathBuf::from(url),
            reason: reason.to_owned(),
        };
        let (bucket, root) = split_s3_url(url).ok_or_else(|| invalid("not an s3:// address"))?;
        if bucket.is_empty() {
            return Err(invalid("no bucket: expected s3://BUCKET[/ROOTDIRECTORY]"));
        }
        if !valid_bucket(bucket) {
            return Err(invalid(
                "not a bucket name (3 to 63 lowercase letters, digits, dots and hyphens)",
            ));
        }
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
            .into_iter()
            .find_map(|name| env(name).filter(|v| !v.is_empty()));
        let allow_http = endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        Ok(S3Target {
            bucket: bucket.to_owned(),
            root: trim_root(root),
            region: ["AWS_REGION", "AWS_DEFAULT_REGION"]
                .into_iter()
                .find_map(|name| env(name).filter(|v| !v.is_empty())),
            endpoint,
            allow_http,
            ..S3Target::default()
        })
    }

    /// Reads the registry's `storage.s3` parameters (`get` returns a
    /// parameter as the driver's Go code sees it, as a string; `None` when
    /// unset). `Err` says which parameter is wrong.
    pub fn from_registry(get: impl Fn(&str) -> Option<String>) -> Result<S3Target, String> {
        let bucket = get("bucket")
            .filter(|b| !b.is_empty())
            .ok_or("`storage.s3.bucket` is not set")?;
        let secure = boolean(&get, "secure", true)?;
        let skip_verify = boolean(&get, "skipverify", false)?;
        let endpoint =
            get("regionendpoint")
                .filter(|e| !e.is_empty())
                .map(|e| match e.contains("://") {
                    true => e,
                    false if secure => format!("https://{e}"),
                    false => format!("http://{e}"),
                });
        let allow_http = !secure
            || endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://"));
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());
        Ok(S3Target {
            bucket,
            root: trim_root(&get("rootdirectory").unwrap_or_default()),
            region: non_empty("region"),
            endpoint,
            access_key: non_empty("accesskey"),
            secret_key: non_empty("secretkey").map(Secret::new),
            session_token: non_empty("sessiontoken").map(Secret::new),
            allow_http,
            skip_verify,
            from_registry_config: true,
        })
    }

    /// The storage root as a layout root: keys are layout paths.
    pub fn root_path(&self) -> PathBuf {
        PathBuf::from(&self.root)
    }

    /// An error of the object store about `what` (an `s3://` address).
    pub fn error(&self, what: &str, source: object_store::Error) -> Error {
        Error::ObjectStore {
            path: PathBuf::from(what),
            message: describe_error(&source),
        }
    }
}

/// The driver trims the root directory's slashes before using it as a
/// key prefix.
fn trim_root(root: &str) -> String {
    root.trim_matches('/').to_owned()
}

/// S3's bucket naming rules, loosely (compatible stores allow more).
fn valid_bucket(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A boolean parameter: Go's driver takes `true`/`false`, as a YAML bool
/// or a string.
fn boolean(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: bool,
) -> Result<bool, String> {
    match get(name).as_deref() {
        None | Some("") => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        Some(v) => Err(format!(
            "`storage.s3.{name}` is {v:?}: the registry refuses to start with it (expected true or false)"
        )),
    }
}

/// What went wrong with a request, without the credentials: the object
/// store's messages name the key and the status, never a secret.
pub(crate) fn describe_error(source: &object_store::Error) -> String {
    let mut text = source.to_string();
    let mut next = std::error::Error::source(source);
    while let Some(cause) = next {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn url_names_bucket_and_root() {
        let t = S3Target::from_url(
            "s3://registry/prod/",
            env(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("AWS_REGION", "eu-1"),
            ]),
        )
        .unwrap();
        assert_eq!(t.bucket, "registry");
        assert_eq!(t.root, "prod");
        assert_eq!(t.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(t.allow_http);
        assert_eq!(t.region.as_deref(), Some("eu-1"));
        assert_eq!(t.to_string(), "s3://registry/prod");
        assert!(!t.from_registry_config);
        assert!(S3Target::from_url("s3://", env(&[])).is_err());
        assert!(S3Target::from_url("s3://a b/", env(&[])).is_err());
    }

    #[test]
    fn registry_parameters_as_the_driver_reads_them() {
        let params = env(&[
            ("bucket", "b"),
            ("rootdirectory", "/reg/"),
            ("regionendpoint", "minio:9000"),
            ("secure", "false"),
            ("accesskey", "AK"),
            ("secretkey", "SECRET"),
            ("region", "us-east-1"),
        ]);
        let t = S3Target::from_registry(params).unwrap();
        assert_eq!(t.root, "reg");
        assert!(t.from_registry_config);
        assert_eq!(t.endpoint.as_deref(), Some("http://minio:9000"));
        assert!(t.allow_http);
        assert_eq!(t.secret_key.as_ref().map(Secret::reveal), Some("SECRET"));
        assert!(!format!("{t:?}").contains("SECRET"));
        let bad = S3Target::from_registry(env(&[("bucket", "b"), ("secure", "yes")]));
        assert!(bad.unwrap_err().contains("storage.s3.secure"));
        assert!(
            S3Target::from_registry(env(&[]))
                .unwrap_err()
                .contains("bucket")
        );
    }
}
