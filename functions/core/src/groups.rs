//! Variant groups in the metadata document: per group, a `srcset` per format (a responsive ladder
//! gives several widths, other presets one), a `sizes` hint and the intrinsic size, so a page can
//! write `<picture>` or `<img srcset sizes>` straight from `metadata.json`. Each output is named by its
//! URL under the CDN base URL, or without one by its root-relative path (the percent-encoded key), so
//! keys with spaces or commas stay valid in a `srcset`.

use std::collections::BTreeMap;

use crate::metadata::{DerivativeInfo, GroupInfo, GroupVariant};
use crate::pipeline::public_url;

/// Formats in the order a `<picture>` lists them: smallest files first, the universal one last.
const ORDER: [&str; 4] = ["avif", "webp", "jpeg", "png"];

/// Groups `derivatives` by their `group` (their preset's name when absent).
pub fn groups(derivatives: &[DerivativeInfo]) -> BTreeMap<String, GroupInfo> {
    let mut by_group: BTreeMap<&str, Vec<&DerivativeInfo>> = BTreeMap::new();
    for d in derivatives {
        let group = d.group.as_deref().unwrap_or(&d.preset);
        by_group.entry(group).or_default().push(d);
    }
    by_group
        .into_iter()
        .map(|(name, members)| (name.to_string(), group_info(&members)))
        .collect()
}

fn group_info(members: &[&DerivativeInfo]) -> GroupInfo {
    let widest = members
        .iter()
        .max_by_key(|d| d.width)
        .expect("a group has a member");
    let mut formats: Vec<&str> = members.iter().map(|d| d.format.as_str()).collect();
    formats.sort_by_key(|f| ORDER.iter().position(|o| o == f).unwrap_or(ORDER.len()));
    formats.dedup();
    let variants = formats
        .into_iter()
        .map(|format| {
            let mut outputs: Vec<&&DerivativeInfo> =
                members.iter().filter(|d| d.format == format).collect();
            outputs.sort_by_key(|d| d.width);
            let location =
                |d: &DerivativeInfo| d.url.clone().unwrap_or_else(|| public_url("", &d.key));
            GroupVariant {
                format: format.to_string(),
                content_type: outputs[0].content_type.clone(),
                srcset: outputs
                    .iter()
                    .map(|d| format!("{} {}w", location(d), d.width))
                    .collect::<Vec<_>>()
                    .join(", "),
                src: location(outputs[outputs.len() - 1]),
            }
        })
        .collect();
    GroupInfo {
        width: widest.width,
        height: widest.height,
        sizes: format!("(max-width: {0}px) 100vw, {0}px", widest.width),
        variants,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(
        preset: &str,
        group: &str,
        format: &str,
        width: u32,
        url: Option<&str>,
    ) -> DerivativeInfo {
        let ext = if format == "jpeg" { "jpg" } else { format };
        DerivativeInfo {
            preset: preset.into(),
            group: Some(group.into()),
            key: format!("derived/a b.jpg/{preset}-{width}w.{ext}"),
            format: format.into(),
            content_type: format!("image/{format}"),
            width,
            height: width * 3 / 4,
            frames: 1,
            bytes: 100,
            url: url.map(str::to_string),
            compression_ratio: 1.0,
            quality: None,
            crop: None,
        }
    }

    #[test]
    fn a_ladder_gives_one_srcset_per_format_narrowest_first_best_format_first() {
        let derivatives = [
            output("hero-jpeg", "hero", "jpeg", 640, None),
            output("hero-jpeg", "hero", "jpeg", 320, None),
            output("hero", "hero", "webp", 320, Some("https://cdn/x-320w.webp")),
            output("hero", "hero", "webp", 640, Some("https://cdn/x-640w.webp")),
            output("thumbnail", "thumbnail", "jpeg", 200, None),
        ];
        let groups = groups(&derivatives);
        assert_eq!(groups.keys().collect::<Vec<_>>(), ["hero", "thumbnail"]);
        let hero = &groups["hero"];
        assert_eq!((hero.width, hero.height), (640, 480));
        assert_eq!(hero.sizes, "(max-width: 640px) 100vw, 640px");
        assert_eq!(hero.variants[0].format, "webp");
        assert_eq!(
            hero.variants[0].srcset,
            "https://cdn/x-320w.webp 320w, https://cdn/x-640w.webp 640w"
        );
        assert_eq!(hero.variants[0].src, "https://cdn/x-640w.webp");
        assert_eq!(
            hero.variants[1].srcset,
            "/derived/a%20b.jpg/hero-jpeg-320w.jpg 320w, /derived/a%20b.jpg/hero-jpeg-640w.jpg 640w"
        );
        assert_eq!(groups["thumbnail"].variants.len(), 1);
    }
}
