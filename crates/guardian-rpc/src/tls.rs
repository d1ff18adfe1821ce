//! The TLS crypto provider of every HTTPS and WSS connection guardian opens (RPC endpoints,
//! notification channels, the operators' `--api` client): rustls with *ring*.
//!
//! reqwest is built without a provider of its own (its default, aws-lc-rs, compiles a large C
//! library in every cold build), so the process must install one before it builds its first
//! HTTP client; [`install_crypto_provider`] does, once, and every place that builds clients
//! calls it first.

use std::sync::Once;

/// Make rustls with *ring* the process's crypto provider. Idempotent, and harmless when the
/// process installed a provider already.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider is installed already: that one serves.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_http_client_builds_once_the_provider_is_installed() {
        super::install_crypto_provider();
        super::install_crypto_provider();
        reqwest::Client::builder().build().expect("a client with TLS builds");
    }
}
