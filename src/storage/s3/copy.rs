//! Server-side copies between two prefixes of the same S3 endpoint
//! (`pgbak sync`): the bytes never leave the provider. One CopyObject up to
//! 5 GiB, else a multipart upload of UploadPartCopy ranges; the
//! destination's storage class and SSE are applied, and the copy is
//! checked with a HEAD (its size, and its SHA-256 where both objects carry
//! a full-object one).

use anyhow::{bail, Context, Result};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, StorageClass};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::{head_after_upload, needs, sdk_error, Store};

/// What a key keeps unencoded in `x-amz-copy-source`: its slashes and the
/// characters URLs never encode.
const COPY_SOURCE_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// `bucket/key` as CopyObject and UploadPartCopy take it: URL-encoded (a
/// prefix with a space, a `+` or non-ASCII would otherwise name another key).
fn copy_source(bucket: &str, key: &str) -> String {
    format!("{bucket}/{}", utf8_percent_encode(key, COPY_SOURCE_KEEPS))
}

/// The largest object one CopyObject copies.
const COPY_OBJECT_MAX: u64 = 5 << 30;
/// The ranges of a multipart copy (S3 allows 5 MiB to 5 GiB per part).
const COPY_PART: u64 = 512 << 20;

impl Store {
    /// Whether `other` is reached through the same endpoint, region and
    /// credentials as this store, so a copy between them can stay there.
    pub fn same_endpoint(&self, other: &Store) -> bool {
        let (a, b) = (&self.settings, &other.settings);
        a.endpoint_url == b.endpoint_url && a.region == b.region && a.sdk.profile == b.sdk.profile
    }

    /// Copies `source`'s object `file` (of `size` bytes) to the same file
    /// name here, on the server.
    pub async fn copy_from(&self, source: &Store, file: &str, size: u64) -> Result<()> {
        let (from_key, to_key) = (source.key_for(file), self.key_for(file));
        let copy_source = copy_source(source.bucket(), &from_key);
        let what = || format!("copying {} to {}", source.uri(&from_key), self.uri(&to_key));
        if size <= COPY_OBJECT_MAX {
            let (sse, kms_key) = self.sse_headers();
            self.client()
                .await
                .copy_object()
                .bucket(self.bucket())
                .key(&to_key)
                .copy_source(&copy_source)
                .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
                .set_server_side_encryption(sse)
                .set_ssekms_key_id(kms_key)
                .send()
                .await
                .map_err(|e| needs(sdk_error(e), "s3:GetObject on the source and s3:PutObject"))
                .with_context(what)?;
        } else {
            self.copy_in_parts(&copy_source, &to_key, size)
                .await
                .with_context(what)?;
        }
        let (copied, original) = (
            head_after_upload(self.client().await, self.bucket(), &to_key).await?,
            head_after_upload(source.client().await, source.bucket(), &from_key).await?,
        );
        let Some(copied) = copied else {
            bail!("{} is not in the bucket after the copy", self.uri(&to_key));
        };
        if copied.content_length() != Some(size as i64) {
            bail!(
                "{} holds {} bytes after the copy, the source {size}",
                self.uri(&to_key),
                copied.content_length().unwrap_or(-1)
            );
        }
        let sums = (
            copied.checksum_sha256(),
            original.as_ref().and_then(|o| o.checksum_sha256()),
        );
        if let (Some(a), Some(b)) = sums {
            if a != b && !a.contains('-') && !b.contains('-') {
                bail!(
                    "{}'s SHA-256 differs from the source's after the copy",
                    self.uri(&to_key)
                );
            }
        }
        Ok(())
    }

    /// A multipart upload of UploadPartCopy ranges; aborted on any failure.
    async fn copy_in_parts(&self, copy_source: &str, to_key: &str, size: u64) -> Result<()> {
        let client = self.client().await;
        let (sse, kms_key) = self.sse_headers();
        let created = client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(to_key)
            .storage_class(StorageClass::from(self.settings.storage_class.as_str()))
            .set_server_side_encryption(sse)
            .set_ssekms_key_id(kms_key)
            .send()
            .await
            .map_err(|e| needs(sdk_error(e), "s3:PutObject"))?;
        let upload_id = created
            .upload_id()
            .context("the store returned no upload id")?
            .to_owned();
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0u64;
            while start < size {
                crate::signals::check()?;
                let end = (start + COPY_PART).min(size) - 1;
                let number = parts.len() as i32 + 1;
                let part = client
                    .upload_part_copy()
                    .bucket(self.bucket())
                    .key(to_key)
                    .upload_id(&upload_id)
                    .part_number(number)
                    .copy_source(copy_source)
                    .copy_source_range(format!("bytes={start}-{end}"))
                    .send()
                    .await
                    .map_err(|e| needs(sdk_error(e), "s3:GetObject on the source"))?;
                let etag = part.copy_part_result().and_then(|r| r.e_tag());
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(etag.map(str::to_owned))
                        .build(),
                );
                start = end + 1;
            }
            client
                .complete_multipart_upload()
                .bucket(self.bucket())
                .key(to_key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| needs(sdk_error(e), "s3:PutObject"))?;
            Ok(())
        }
        .await;
        if result.is_err() {
            let _ = client
                .abort_multipart_upload()
                .bucket(self.bucket())
                .key(to_key)
                .upload_id(&upload_id)
                .send()
                .await;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::copy_source;

    #[test]
    fn the_copy_source_is_url_encoded_with_its_slashes_kept() {
        let cases = [
            ("b", "prod/app_full_x.dump", "b/prod/app_full_x.dump"),
            ("b", "pre fix/a+b.dump", "b/pre%20fix/a%2Bb.dump"),
            ("b", "caf\u{e9}/x~y.dump", "b/caf%C3%A9/x~y.dump"),
            ("b", "q?x=1&y#z/d.dump", "b/q%3Fx%3D1%26y%23z/d.dump"),
        ];
        for (bucket, key, want) in cases {
            assert_eq!(copy_source(bucket, key), want, "{key}");
        }
    }
}
