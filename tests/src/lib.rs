//! End-to-end test support: starting real `boxoffice` processes on loopback.
