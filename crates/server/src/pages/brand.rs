//! Branding of the pages (sign-in, second factor, consent, device, logout, account): a product
//! name, a logo and colours from `[branding]`, so an application team can put its own face on
//! them without a fork.
//!
//! - The templates read the brand of the request being served: [`scope`], a middleware over
//!   the whole router, puts the server's [`Brand`] in a task-local for the request, and
//!   `base.html` calls [`product_name`] and [`has_logo`]. Pages rendered outside a request get
//!   the default brand.
//! - Colours reach the pages as `/static/brand.css` (CSS custom properties read by
//!   `pages.css`), so the Content-Security-Policy stays free of inline style; the logo is
//!   `/static/logo`, read once at start-up (PNG, JPEG, GIF, WebP or SVG, at most 256 KiB; an
//!   SVG is an image under the pages' CSP, so a script in it never runs).
//! - Configured colours must keep WCAG 2.x AA contrast (4.5:1) for text on the background and
//!   for the buttons' white text on the accent colour, as the defaults do; anything else is
//!   refused at start-up, naming the key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use crate::AppState;

/// The product name when none is configured.
pub const DEFAULT_PRODUCT_NAME: &str = "trustgate";
/// The accent colour of `pages.css` (buttons, links).
pub const DEFAULT_ACCENT: &str = "#2456c7";
/// Largest logo file.
pub const MAX_LOGO_BYTES: u64 = 256 * 1024;
/// The least contrast ratio configured colours must keep (WCAG 2.x AA, normal text).
pub const MIN_CONTRAST: f64 = 4.5;

/// `[branding]` of the server's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrandingConfig {
    /// Shown in every page's title and header (1 to 60 characters).
    pub product_name: String,
    /// A logo shown in the header next to the name (PNG, JPEG, GIF, WebP or SVG).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_file: Option<PathBuf>,
    /// Buttons and links, `#rrggbb`; white text on it must have 4.5:1 contrast.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accent_colour: Option<String>,
    /// The page background, `#rrggbb`, with `text_colour` (both or neither; 4.5:1 between
    /// them). Unset: the browser's light or dark scheme.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub background_colour: Option<String>,
    /// The text colour, `#rrggbb`, with `background_colour`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_colour: Option<String>,
}

impl Default for BrandingConfig {
    fn default() -> Self {
        Self {
            product_name: DEFAULT_PRODUCT_NAME.into(),
            logo_file: None,
            accent_colour: None,
            background_colour: None,
            text_colour: None,
        }
    }
}

impl BrandingConfig {
    /// Refuses a name, colour or contrast outside the rules (the message names the key).
    pub fn validate(&self) -> Result<(), String> {
        let name = self.product_name.trim();
        if name.is_empty()
            || self.product_name.chars().count() > 60
            || self.product_name.chars().any(char::is_control)
        {
            return Err("branding.product_name: 1 to 60 characters, no control characters".into());
        }
        let accent = colour("branding.accent_colour", self.accent_colour.as_deref())?
            .unwrap_or(parse_hex(DEFAULT_ACCENT).unwrap_or_default());
        let white = [255, 255, 255];
        let ratio = contrast(accent, white);
        if ratio < MIN_CONTRAST {
            return Err(format!(
                "branding.accent_colour: white button text on it has a contrast of {ratio:.2}:1; \
                 at least {MIN_CONTRAST}:1 is needed (choose a darker colour)"
            ));
        }
        let background = colour(
            "branding.background_colour",
            self.background_colour.as_deref(),
        )?;
        let text = colour("branding.text_colour", self.text_colour.as_deref())?;
        match (background, text) {
            (Some(background), Some(text)) => {
                let ratio = contrast(background, text);
                if ratio < MIN_CONTRAST {
                    return Err(format!(
                        "branding.text_colour: its contrast with branding.background_colour is \
                         {ratio:.2}:1; at least {MIN_CONTRAST}:1 is needed"
                    ));
                }
                Ok(())
            }
            (None, None) => Ok(()),
            _ => Err("branding.background_colour and branding.text_colour go together".into()),
        }
    }
}

/// The brand the pages are rendered with: the name, the logo's bytes and type, the
/// stylesheet.
#[derive(Debug)]
pub struct Brand {
    product_name: String,
    logo: Option<(Vec<u8>, &'static str)>,
    css: String,
}

impl Default for Brand {
    fn default() -> Self {
        Brand::without_logo(&BrandingConfig::default())
    }
}

impl Brand {
    /// The brand of a validated `config`, its logo read from disk.
    pub fn load(config: &BrandingConfig) -> Result<Self, String> {
        let mut brand = Brand::without_logo(config);
        if let Some(path) = &config.logo_file {
            brand.logo = Some(read_logo(path)?);
        }
        Ok(brand)
    }

    fn without_logo(config: &BrandingConfig) -> Self {
        let mut css = String::from(":root {");
        let accent = config.accent_colour.as_deref().unwrap_or(DEFAULT_ACCENT);
        css.push_str(&format!(" --accent: {};", accent.to_ascii_lowercase()));
        if let (Some(background), Some(text)) = (&config.background_colour, &config.text_colour) {
            let dark = parse_hex(background).is_some_and(|rgb| luminance(rgb) < 0.18);
            css.push_str(&format!(
                " color-scheme: {}; --page-background: {}; --page-text: {};",
                if dark { "dark" } else { "light" },
                background.to_ascii_lowercase(),
                text.to_ascii_lowercase()
            ));
        }
        css.push_str(" }\n");
        Brand {
            product_name: config.product_name.trim().to_owned(),
            logo: None,
            css,
        }
    }
}

/// The logo file's bytes and content type, by its extension.
fn read_logo(path: &Path) -> Result<(Vec<u8>, &'static str), String> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let content_type = match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        _ => {
            return Err(format!(
                "branding.logo_file: {}: a .png, .jpg, .gif, .webp or .svg file",
                path.display()
            ));
        }
    };
    let fail = |e: std::io::Error| format!("branding.logo_file: {}: {e}", path.display());
    let size = std::fs::metadata(path).map_err(fail)?.len();
    if size == 0 || size > MAX_LOGO_BYTES {
        return Err(format!(
            "branding.logo_file: {}: {size} bytes; 1 byte to {} KiB",
            path.display(),
            MAX_LOGO_BYTES / 1024
        ));
    }
    Ok((std::fs::read(path).map_err(fail)?, content_type))
}

/// `#rrggbb` under `key`, if set.
fn colour(key: &str, value: Option<&str>) -> Result<Option<[u8; 3]>, String> {
    value
        .map(|v| parse_hex(v).ok_or_else(|| format!("{key}: `{v}` is not a #rrggbb colour")))
        .transpose()
}

fn parse_hex(value: &str) -> Option<[u8; 3]> {
    let digits = value.strip_prefix('#')?;
    if digits.len() != 6 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let channel = |i: usize| u8::from_str_radix(&digits[i..i + 2], 16).ok();
    Some([channel(0)?, channel(2)?, channel(4)?])
}

/// WCAG 2.x relative luminance.
fn luminance(rgb: [u8; 3]) -> f64 {
    let linear = |c: u8| {
        let c = f64::from(c) / 255.0;
        if c <= 0.039_28 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        }
    };
    0.2126 * linear(rgb[0]) + 0.7152 * linear(rgb[1]) + 0.0722 * linear(rgb[2])
}

/// WCAG 2.x contrast ratio of two colours (1 to 21).
fn contrast(a: [u8; 3], b: [u8; 3]) -> f64 {
    let (la, lb) = (luminance(a), luminance(b));
    (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
}

tokio::task_local! {
    static BRAND: Arc<Brand>;
}

/// Serves the request with the server's brand in scope for its templates.
pub async fn scope(State(state): State<AppState>, request: Request, next: Next) -> Response {
    BRAND.scope(state.brand.clone(), next.run(request)).await
}

/// The product name of the brand in scope (templates).
pub fn product_name() -> String {
    BRAND
        .try_with(|brand| brand.product_name.clone())
        .unwrap_or_else(|_| DEFAULT_PRODUCT_NAME.into())
}

/// Whether the brand in scope has a logo (templates).
pub fn has_logo() -> bool {
    BRAND
        .try_with(|brand| brand.logo.is_some())
        .unwrap_or(false)
}

/// `GET /static/brand.css`.
pub async fn stylesheet(State(state): State<AppState>) -> Response {
    (
        [(
            CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        )],
        state.brand.css.clone(),
    )
        .into_response()
}

/// `GET /static/logo`: the configured logo, or 404.
pub async fn logo(State(state): State<AppState>) -> Response {
    match &state.brand.logo {
        Some((bytes, content_type)) => (
            [(CONTENT_TYPE, HeaderValue::from_static(content_type))],
            bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contrast_follows_wcag() {
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
        assert!((contrast([10, 20, 30], [10, 20, 30]) - 1.0).abs() < 1e-9);
        // #767676 on white is the classic 4.54:1 borderline.
        let grey = parse_hex("#767676").expect("hex");
        assert!((contrast(grey, [255, 255, 255]) - 4.54).abs() < 0.01);
    }

    #[test]
    fn the_defaults_are_accessible_and_bad_values_are_named() {
        assert_eq!(BrandingConfig::default().validate(), Ok(()));
        let with = |edit: fn(&mut BrandingConfig)| {
            let mut config = BrandingConfig::default();
            edit(&mut config);
            config.validate()
        };
        assert_eq!(
            with(|c| {
                c.accent_colour = Some("#0A7D32".into());
                c.background_colour = Some("#101418".into());
                c.text_colour = Some("#f0f0f0".into());
            }),
            Ok(())
        );
        for (edit, key) in [
            (
                (|c: &mut BrandingConfig| c.product_name = " ".into()) as fn(&mut BrandingConfig),
                "branding.product_name",
            ),
            (|c| c.product_name = "x".repeat(61), "branding.product_name"),
            (|c| c.product_name = "a\nb".into(), "branding.product_name"),
            (
                |c| c.accent_colour = Some("green".into()),
                "branding.accent_colour",
            ),
            (
                |c| c.accent_colour = Some("#12345".into()),
                "branding.accent_colour",
            ),
            // Light yellow under white button text: unreadable.
            (
                |c| c.accent_colour = Some("#ffeb3b".into()),
                "branding.accent_colour",
            ),
            (
                |c| {
                    c.background_colour = Some("#ffffff".into());
                    c.text_colour = Some("#aaaaaa".into());
                },
                "branding.text_colour",
            ),
            (
                |c| c.background_colour = Some("#ffffff".into()),
                "go together",
            ),
        ] {
            let err = with(edit).expect_err(key);
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn the_stylesheet_carries_the_colours_and_the_scheme() {
        let brand = Brand::without_logo(&BrandingConfig {
            accent_colour: Some("#0A7D32".into()),
            background_colour: Some("#101418".into()),
            text_colour: Some("#F0F0F0".into()),
            ..BrandingConfig::default()
        });
        assert_eq!(
            brand.css,
            ":root { --accent: #0a7d32; color-scheme: dark; --page-background: #101418; \
             --page-text: #f0f0f0; }\n"
        );
        assert_eq!(Brand::default().css, ":root { --accent: #2456c7; }\n");
    }

    #[test]
    fn logos_are_images_of_bounded_size() {
        let dir = tempfile::tempdir().expect("dir");
        let png = dir.path().join("logo.PNG");
        std::fs::write(&png, b"\x89PNG\r\n\x1a\n").expect("write");
        assert_eq!(read_logo(&png).expect("png").1, "image/png");
        let script = dir.path().join("logo.html");
        std::fs::write(&script, b"<script>").expect("write");
        assert!(read_logo(&script).is_err());
        let big = dir.path().join("big.svg");
        std::fs::write(&big, vec![b' '; 256 * 1024 + 1]).expect("write");
        assert!(read_logo(&big).expect_err("too big").contains("KiB"));
        assert!(read_logo(&dir.path().join("missing.png")).is_err());
    }
}
