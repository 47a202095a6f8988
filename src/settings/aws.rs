//! What the AWS SDK would read from the process environment, read from this
//! run's environment instead ([`super::env`]: the environment file and the
//! `*_FILE` secrets included) and handed to the SDK explicitly
//! ([`crate::storage::s3::connect`]): pgbak never exports them.
//!
//! Static keys, the profile and the checksum settings are covered; the rest
//! of the SDK's chain (web identity, container and instance roles,
//! `AWS_CONFIG_FILE`) reads the process environment, where the platform
//! (EKS, ECS, systemd) puts it.

use std::str::FromStr;

use anyhow::Result;
use aws_sdk_s3::config::Credentials;

use super::vars;
use crate::error::usage;
use crate::pg::url::Env;
use crate::storage::s3::SdkEnv;

/// The AWS settings in `env`. Static credentials need both keys (a session
/// token is optional), as the SDK's own environment provider does.
pub fn sdk_env(env: Env) -> Result<SdkEnv> {
    let credentials = match (
        env(vars::AWS_ACCESS_KEY_ID),
        env(vars::AWS_SECRET_ACCESS_KEY),
    ) {
        (Some(id), Some(secret)) => Some(Credentials::new(
            id,
            secret,
            env(vars::AWS_SESSION_TOKEN),
            None,
            "pgbak-environment",
        )),
        _ => None,
    };
    Ok(SdkEnv {
        credentials,
        profile: env(vars::AWS_PROFILE),
        request_checksum: parsed(env, vars::AWS_REQUEST_CHECKSUM_CALCULATION)?,
        response_checksum: parsed(env, vars::AWS_RESPONSE_CHECKSUM_VALIDATION)?,
    })
}

/// A checksum setting: `when_supported` or `when_required` (any case).
fn parsed<T: FromStr>(env: Env, name: &str) -> Result<Option<T>> {
    env(name)
        .map(|text| {
            T::from_str(text.trim()).map_err(|_| {
                usage(format!(
                    "{name}={text:?}: use when_supported or when_required"
                ))
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};

    use super::*;

    fn of(vars: &[(&str, &str)]) -> Result<SdkEnv> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sdk_env(&move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn keys_profile_and_checksums_come_from_the_given_environment() {
        let none = of(&[]).unwrap();
        assert!(none.credentials.is_none() && none.profile.is_none());
        assert!(none.request_checksum.is_none() && none.response_checksum.is_none());
        // One key alone is left to the SDK's chain.
        assert!(of(&[("AWS_ACCESS_KEY_ID", "id")])
            .unwrap()
            .credentials
            .is_none());
        let set = of(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "token"),
            ("AWS_PROFILE", "backups"),
            ("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED"),
            ("AWS_RESPONSE_CHECKSUM_VALIDATION", "when_supported"),
        ])
        .unwrap();
        let credentials = set.credentials.clone().expect("static credentials");
        assert_eq!(credentials.access_key_id(), "id");
        assert_eq!(credentials.secret_access_key(), "s3cr3t");
        assert_eq!(credentials.session_token(), Some("token"));
        assert!(!format!("{set:?}").contains("s3cr3t"), "{set:?}");
        assert_eq!(set.profile.as_deref(), Some("backups"));
        assert_eq!(
            set.request_checksum,
            Some(RequestChecksumCalculation::WhenRequired)
        );
        assert_eq!(
            set.response_checksum,
            Some(ResponseChecksumValidation::WhenSupported)
        );
        let bad = of(&[("AWS_REQUEST_CHECKSUM_CALCULATION", "sometimes")]);
        assert_eq!(
            crate::error::exit_code(&bad.unwrap_err()),
            crate::error::USAGE
        );
    }
}
