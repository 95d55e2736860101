//! The api crate's one integration-test binary: tests that need real sockets.

mod webhooks;
