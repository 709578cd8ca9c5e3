//! Multipart uploads: where an upload's data is while it is in progress.
//!
//! The s3 driver writes an upload's `data` as a multipart upload, which is
//! no object until completed, and is billed until completed or aborted.
//! Purging a stale upload aborts its multipart uploads too (the registry's
//! own purge leaves them). The store's client does not list multipart
//! uploads, so that one request (ListMultipartUploads) is signed here with
//! the client's own credentials and signer.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::multipart::MultipartStore;

use super::S3Storage;
use super::config::describe_error;

/// Open multipart uploads under `prefix` (a key prefix): key → upload ids.
pub async fn list(
    storage: &S3Storage,
    prefix: &str,
) -> Result<HashMap<String, Vec<String>>, String> {
    let mut uploads: HashMap<String, Vec<String>> = HashMap::new();
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut query = vec![("prefix", prefix.to_owned()), ("uploads", String::new())];
        if let Some((key, id)) = &markers {
            query.push(("key-marker", key.clone()));
            query.push(("upload-id-marker", id.clone()));
        }
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        let url = format!("{}?{}", storage.base_url, query.join("&"));
        let body = signed_get(storage, &url).await?;
        let text = String::from_utf8_lossy(&body);
        for upload in elements(&text, "Upload") {
            if let (Some(key), Some(id)) = (element(upload, "Key"), element(upload, "UploadId")) {
                uploads.entry(unescape(key)).or_default().push(unescape(id));
            }
        }
        let truncated = element(&text, "IsTruncated") == Some("true");
        let next = element(&text, "NextKeyMarker").zip(element(&text, "NextUploadIdMarker"));
        match (truncated, next) {
            (true, Some((key, id))) => markers = Some((unescape(key), unescape(id))),
            _ => break,
        }
    }
    Ok(uploads)
}

/// Aborts the multipart upload `id` of `key`.
pub async fn abort(storage: &S3Storage, key: &str, id: &str) -> Result<(), String> {
    storage.requests.delete.fetch_add(1, Ordering::Relaxed);
    storage
        .store()
        .abort_multipart(&object_store::path::Path::from(key), &id.to_owned())
        .await
        .map_err(|e| describe_error(&e))
}

async fn signed_get(storage: &S3Storage, url: &str) -> Result<Vec<u8>, String> {
    let credential = storage
        .store()
        .credentials()
        .get_credential()
        .await
        .map_err(|e| describe_error(&e))?;
    let mut request: HttpRequest = http::Request::builder()
        .method(http::Method::GET)
        .uri(url)
        .body(HttpRequestBody::empty())
        .map_err(|e| format!("{url}: {e}"))?;
    AwsAuthorizer::new(&credential, "s3", &storage.region)
        .try_authorize(&mut request, None)
        .map_err(|e| describe_error(&e))?;
    storage.requests.list.fetch_add(1, Ordering::Relaxed);
    let response = storage
        .http
        .execute(request)
        .await
        .map_err(|e| format!("ListMultipartUploads: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .bytes()
        .await
        .map_err(|e| format!("ListMultipartUploads: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "ListMultipartUploads answered {status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    Ok(body.to_vec())
}

/// Percent-encodes a query value as SigV4 canonicalizes it.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of every `<name>…</name>` element in `xml`.
fn elements<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// The text of the first `<name>…</name>` element in `xml`.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    elements(xml, name).into_iter().next()
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_uploads_and_markers_from_the_listing() {
        let xml = "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated>\
            <NextKeyMarker>b</NextKeyMarker><NextUploadIdMarker>2</NextUploadIdMarker>\
            <Upload><Key>a/data</Key><UploadId>1&amp;x</UploadId></Upload>\
            <Upload><Key>b/data</Key><UploadId>2</UploadId></Upload></ListMultipartUploadsResult>";
        let uploads: Vec<(&str, &str)> = elements(xml, "Upload")
            .into_iter()
            .map(|u| (element(u, "Key").unwrap(), element(u, "UploadId").unwrap()))
            .collect();
        assert_eq!(uploads, [("a/data", "1&amp;x"), ("b/data", "2")]);
        assert_eq!(unescape("1&amp;x"), "1&x");
        assert_eq!(element(xml, "NextKeyMarker"), Some("b"));
        assert_eq!(encode("reg/docker v2"), "reg%2Fdocker%20v2");
    }
}
