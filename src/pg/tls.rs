//! TLS for pgbak's own server connection, following libpq's `sslmode` meanings:
//! `prefer`/`require` encrypt without checking the certificate (unless a root
//! certificate is named), `verify-ca` checks the chain, `verify-full` checks
//! the chain and the host name. As in libpq, verifying needs a root
//! certificate: `sslrootcert`, else `~/.postgresql/root.crt`; without either
//! verify-ca/verify-full is refused before connecting (exit 2), and the
//! system's trusted roots are used only when asked for (`sslrootcert=system`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};

use super::url::{ConnSettings, SslMode};

/// The rustls configuration for `settings`, or None when TLS is off.
pub fn client_config(settings: &ConnSettings) -> Result<Option<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let root_file = root_cert_file(settings);
    let verify = match settings.sslmode {
        SslMode::Disable => return Ok(None),
        // libpq: a named root certificate upgrades require to verify-ca.
        SslMode::Allow | SslMode::Prefer | SslMode::Require if root_file.is_none() => {
            Verify::Nothing
        }
        SslMode::Allow | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => Verify::Chain,
        SslMode::VerifyFull => Verify::Full,
    };
    if verify != Verify::Nothing && root_file.is_none() {
        return Err(crate::error::usage(format!(
            "sslmode={} needs a root certificate to check the server's against, and there is \
             none: sslrootcert is not set and ~/.postgresql/root.crt does not exist. Name the \
             CA with sslrootcert=/path/to/ca.pem, use the system's trusted roots with \
             sslrootcert=system, or use sslmode=require (encrypted, not verified)",
            settings.sslmode.as_str()
        )));
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?;
    let builder = match verify {
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed {
                provider,
                chain: None,
            })),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(root_store(root_file.as_deref())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .context("setting up TLS certificate verification")?;
            if verify == Verify::Full {
                builder.with_webpki_verifier(webpki)
            } else {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(Relaxed {
                        provider,
                        chain: Some(webpki),
                    }))
            }
        }
    };
    let config = match client_identity(settings)? {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .context("loading the client certificate (sslcert/sslkey)")?,
        None => builder.with_no_client_auth(),
    };
    Ok(Some(config))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    Nothing,
    Chain,
    Full,
}

fn home_file(name: &str) -> Option<PathBuf> {
    let path = crate::settings::home_dir()?.join(".postgresql").join(name);
    path.exists().then_some(path)
}

/// `sslrootcert`, else `~/.postgresql/root.crt` when it exists; `system` means the OS store.
fn root_cert_file(settings: &ConnSettings) -> Option<PathBuf> {
    match settings.params.get("sslrootcert") {
        Some(path) => Some(PathBuf::from(path)),
        None => home_file("root.crt"),
    }
}

fn root_store(file: Option<&Path>) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    match file {
        Some(path) if path != Path::new("system") => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .with_context(|| format!("reading sslrootcert {}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            anyhow::ensure!(
                added > 0,
                "sslrootcert {} holds no usable certificate",
                path.display()
            );
        }
        // sslrootcert=system (None is refused above): the OS store, which
        // honours SSL_CERT_FILE and SSL_CERT_DIR as OpenSSL does.
        _ => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

fn client_identity(
    settings: &ConnSettings,
) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>> {
    let cert = settings
        .params
        .get("sslcert")
        .map(PathBuf::from)
        .or_else(|| home_file("postgresql.crt"));
    let key = settings
        .params
        .get("sslkey")
        .map(PathBuf::from)
        .or_else(|| home_file("postgresql.key"));
    let (Some(cert), Some(key)) = (cert, key) else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(&cert)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading sslcert {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key)
        .with_context(|| format!("reading sslkey {}", key.display()))?;
    Ok(Some((certs, key)))
}

/// The verifiers libpq's weaker modes call for: `sslmode=require` without a
/// root certificate (`chain` None: encrypted, not authenticated) and
/// `verify-ca` (the chain must lead to a trusted root; the name is not
/// checked). Either way the handshake's signatures are checked with the
/// provider's algorithms, as the full verifier checks them.
#[derive(Debug)]
struct Relaxed {
    provider: Arc<CryptoProvider>,
    chain: Option<Arc<WebPkiServerVerifier>>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
