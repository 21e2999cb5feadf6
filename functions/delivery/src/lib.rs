//! imgpipe-delivery: what people and browsers see of the derivatives bucket.
//!
//! - [`gateway`]: a local stand-in for the CloudFront distribution: `GET /<key>/<group>` negotiated
//!   by Accept with the same rules as `infra/cloudfront/negotiate.js` ([`imgpipe_core::negotiate`]),
//!   files served as they are, with the headers the distribution's policies add.
//! - [`gallery`]: one static HTML page of what imgpipe made (derivatives side by side, ThumbHash
//!   placeholders painted before the images load, EXIF/GPS facts, failures with their reason);
//!   [`gallery_html`] renders it, [`gallery`] collects the metadata documents from S3.
//! - [`on_request`]: ladder rungs and signed variants rendered on a miss, stored, then served.
//! - [`render_origin`]: the origin CloudFront fails over to on a miss (the `render` Lambda behind a
//!   function URL): the variant rendered, stored, answered inline or by a redirect past 4 MiB.
//! - [`render_config`]: the render function's environment.
//! - [`stack`]: a deployed stack's outputs (`--stack NAME`) or a bucket given directly.
#![warn(missing_docs)]

pub mod gallery;
pub mod gallery_html;
pub mod gateway;
pub mod on_request;
pub mod render_config;
pub mod render_origin;
pub mod stack;
