//! The page `GET /` answers a browser (`--ui-color`, `--ui-message`): how two
//! versions of Pulse are told apart during a rollout.
//!
//! Both values end up in HTML, so both are checked here, when the argument is
//! parsed: the colour is written into the page's stylesheet as it is, so only a
//! hex colour or one of a few names passes; the message is free text, escaped
//! when the page is written (routes/page.rs), and refused only when it is long or
//! holds control characters.

use super::rules::RuleError;

/// `--ui-color`'s default: the blue of Pulse's dashboards.
pub const DEFAULT_COLOR: &str = "#2f6fb3";

/// Longest `--ui-message`, in characters: a line of a page, not a document.
pub const MAX_MESSAGE_CHARS: usize = 200;

/// The colour names `--ui-color` accepts besides `#rgb` and `#rrggbb`: a closed
/// set, each the CSS colour of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorName {
    /// `#000000`.
    Black,
    /// `#0000ff`.
    Blue,
    /// `#808080`.
    Gray,
    /// `#008000`.
    Green,
    /// `#ffa500`.
    Orange,
    /// `#ffc0cb`.
    Pink,
    /// `#800080`.
    Purple,
    /// `#ff0000`.
    Red,
    /// `#008080`.
    Teal,
    /// `#ffffff`.
    White,
    /// `#ffff00`.
    Yellow,
}

impl ColorName {
    /// Every name, in the order messages list them.
    pub const ALL: [Self; 11] = [
        Self::Black,
        Self::Blue,
        Self::Gray,
        Self::Green,
        Self::Orange,
        Self::Pink,
        Self::Purple,
        Self::Red,
        Self::Teal,
        Self::White,
        Self::Yellow,
    ];

    /// The name, as given and as CSS knows it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Black => "black",
            Self::Blue => "blue",
            Self::Gray => "gray",
            Self::Green => "green",
            Self::Orange => "orange",
            Self::Pink => "pink",
            Self::Purple => "purple",
            Self::Red => "red",
            Self::Teal => "teal",
            Self::White => "white",
            Self::Yellow => "yellow",
        }
    }

    /// Its red, green and blue, as CSS defines the name.
    const fn rgb(self) -> [u8; 3] {
        match self {
            Self::Black => [0, 0, 0],
            Self::Blue => [0, 0, 255],
            Self::Gray => [128, 128, 128],
            Self::Green => [0, 128, 0],
            Self::Orange => [255, 165, 0],
            Self::Pink => [255, 192, 203],
            Self::Purple => [128, 0, 128],
            Self::Red => [255, 0, 0],
            Self::Teal => [0, 128, 128],
            Self::White => [255, 255, 255],
            Self::Yellow => [255, 255, 0],
        }
    }
}

/// A checked `--ui-color`: CSS that can be written into a stylesheet as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiColor {
    /// `#rgb`, `#rrggbb` (lower case) or a [`ColorName`].
    css: String,
    rgb: [u8; 3],
}

impl UiColor {
    /// The colour as CSS: only `#`, hex digits or a name's letters.
    pub fn css(&self) -> &str {
        &self.css
    }

    /// The text colour readable on this one: black on light colours, white on
    /// dark ones (by the WCAG relative luminance, the contrast ratio's midpoint).
    pub fn ink(&self) -> &'static str {
        let linear = |c: u8| {
            let c = f64::from(c) / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        let [r, g, b] = self.rgb.map(linear);
        let luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b;
        // Equal contrast against black and white at L = sqrt(1.05 * 0.05) - 0.05.
        if luminance > 0.179 {
            "#000000"
        } else {
            "#ffffff"
        }
    }
}

/// `--ui-color`: `#rgb`, `#rrggbb` or one of [`ColorName::ALL`], any case.
pub fn ui_color(value: &str) -> Result<UiColor, RuleError> {
    let given = value.trim().to_ascii_lowercase();
    if let Some(name) = ColorName::ALL.into_iter().find(|n| n.as_str() == given) {
        return Ok(UiColor {
            css: given,
            rgb: name.rgb(),
        });
    }
    let digits = given
        .strip_prefix('#')
        .filter(|d| matches!(d.len(), 3 | 6) && d.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| RuleError::UiColor {
            given: value.to_owned(),
            names: ColorName::ALL.map(ColorName::as_str).join(", "),
        })?;
    let nibble = |i: usize| u8::from_str_radix(&digits[i..=i], 16).unwrap_or_default();
    let rgb = if digits.len() == 3 {
        [0, 1, 2].map(|i| nibble(i) * 17)
    } else {
        [0, 2, 4].map(|i| nibble(i) * 16 + nibble(i + 1))
    };
    Ok(UiColor { css: given, rgb })
}

/// A checked `--ui-message`: at most [`MAX_MESSAGE_CHARS`] characters, no
/// control characters; not yet escaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiMessage(String);

impl UiMessage {
    /// The message as given (escape it before writing it into HTML).
    pub fn text(&self) -> &str {
        &self.0
    }
}

/// `--ui-message`: free text shown on the page, HTML-escaped there.
pub fn ui_message(value: &str) -> Result<UiMessage, RuleError> {
    if value.chars().count() > MAX_MESSAGE_CHARS {
        return Err(RuleError::UiMessageTooLong {
            max: MAX_MESSAGE_CHARS,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(RuleError::ControlCharacters);
    }
    Ok(UiMessage(value.to_owned()))
}

/// What the page shows besides the process's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSettings {
    /// `--ui-color`.
    pub color: UiColor,
    /// `--ui-message`, if any.
    pub message: Option<UiMessage>,
}

impl Default for UiSettings {
    fn default() -> Self {
        Self {
            color: ui_color(DEFAULT_COLOR).expect("the default colour is a #rrggbb colour"),
            message: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_hex_or_a_known_name() {
        assert_eq!(ui_color("#FF00aa").unwrap().css(), "#ff00aa");
        assert_eq!(ui_color(" #abc ").unwrap().css(), "#abc");
        assert_eq!(ui_color("Teal").unwrap().css(), "teal");
        for bad in [
            "",
            "#ff00a",
            "#ff00aag",
            "ff00aa",
            "#ff00aa;}",
            "red;background:url(x)",
            "rgb(1,2,3)",
            "navy",
            "#ff00aa00",
        ] {
            let err = ui_color(bad).unwrap_err().to_string();
            assert!(
                err.contains("#rrggbb") && err.contains("teal"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_ink_contrasts_with_the_colour() {
        for (colour, ink) in [
            ("#ff00aa", "#000000"),
            ("yellow", "#000000"),
            ("#fff", "#000000"),
            ("black", "#ffffff"),
            ("blue", "#ffffff"),
            (DEFAULT_COLOR, "#ffffff"),
        ] {
            assert_eq!(ui_color(colour).unwrap().ink(), ink, "{colour}");
        }
        assert_eq!(ui_color("#abc").unwrap().rgb, [0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn messages_are_one_short_line() {
        assert_eq!(
            ui_message("canary <b>v2</b>").unwrap().text(),
            "canary <b>v2</b>"
        );
        assert!(ui_message(&"é".repeat(MAX_MESSAGE_CHARS)).is_ok());
        assert_eq!(
            ui_message(&"x".repeat(MAX_MESSAGE_CHARS + 1)),
            Err(RuleError::UiMessageTooLong {
                max: MAX_MESSAGE_CHARS
            })
        );
        assert_eq!(ui_message("two\nlines"), Err(RuleError::ControlCharacters));
    }
}
