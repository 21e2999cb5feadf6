//! imgpipe-api: the upload API apps call before they upload, and to learn how an upload ended.
//!
//! `POST /v1/uploads ⇒ validate (type, size, filename) ⇒ key uploads/<ULID>/<filename> ⇒ sign a
//! POST policy (or a PUT URL) ⇒ 201 with the form, the status URL and the derivatives to come`;
//! `GET /v1/images/{id} ⇒ list the upload's key ⇒ read its metadata.json ⇒ pending / done / failed`;
//! `PUT /v1/images/{id}/focus ⇒ auth ⇒ done? ⇒ copy the source onto itself with the new point ⇒ 202`.
//!
//! One [`routes::router`] is served by `lambda_http` under Lambda (API Gateway HTTP API, payload
//! 2.0) and by a local HTTP server elsewhere (`api --listen`), so both run the same code.
//!
//! # Layout
//! - [`config`]: environment configuration (the pipeline's own limits and presets).
//! - [`routes`]: the router, its state and handlers; [`error`]: JSON errors naming the field.
//! - [`upload`]: request validation (pure); [`post_policy`]: the pre-signed POST (pure);
//!   [`credentials`]: signing credentials from the SDK's provider chain.
//! - [`status`] and [`health`]: `GET /v1/images/{id}` and `GET /v1/health`; [`focus`]:
//!   `PUT /v1/images/{id}/focus` (a new focal point; only the covers that follow it are re-made).
#![warn(missing_docs)]

pub mod auth;
pub mod config;
pub mod credentials;
pub mod error;
pub mod focus;
pub mod health;
pub mod post_policy;
pub mod routes;
pub mod status;
pub mod upload;

pub use config::ApiConfig;
pub use routes::{AppState, router};
