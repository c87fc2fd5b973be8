//! The provider's billing settings (SPEC §6.1; 3scale §23): mode, currency, charging, invoice
//! texts, friendly-id numbering and the payment gateway.

use crate::form::{Form, FromForm};
use crate::money::minor_units;
use crate::Invalid;

macro_rules! words {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            pub const WORDS: &'static [&'static str] = &[$($word),*];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),* }
            }

            pub fn parse(s: &str) -> Option<$name> {
                match s { $($word => Some($name::$variant),)* _ => None }
            }
        }
    };
}

pub(crate) use words;

words!(
    /// `prepaid` bills the month ahead, `postpaid` the month behind.
    Mode { Prepaid = "prepaid", Postpaid = "postpaid" }
);
words!(
    /// Friendly ids: `monthly` (`YYYY-MM-XXXXXXXX`) or `yearly` (`YYYY-XXXXXXXX`).
    Numbering { Monthly = "monthly", Yearly = "yearly" }
);
words!(
    /// `offline` (an admin marks invoices paid) or `stripe`.
    GatewayKind { Offline = "offline", Stripe = "stripe" }
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    /// An ISO 4217 code with minor units.
    pub currency: String,
    pub charging_enabled: bool,
    pub invoice_footnote: Option<String>,
    /// Shown on invoices whose VAT rate is 0.
    pub vat_zero_text: Option<String>,
    pub numbering: Numbering,
    pub payment_gateway: GatewayKind,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode: Mode::Postpaid,
            currency: "USD".into(),
            charging_enabled: false,
            invoice_footnote: None,
            vat_zero_text: None,
            numbering: Numbering::Monthly,
            payment_gateway: GatewayKind::Offline,
        }
    }
}

/// A change to the settings: the fields given, each valid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsPatch {
    pub mode: Option<Mode>,
    pub currency: Option<String>,
    pub charging_enabled: Option<bool>,
    /// `Some(None)`: cleared.
    pub invoice_footnote: Option<Option<String>>,
    pub vat_zero_text: Option<Option<String>>,
    pub numbering: Option<Numbering>,
    pub payment_gateway: Option<GatewayKind>,
}

/// An optional word of a fixed set, as a form gives it.
pub(crate) fn one_of<T: Copy>(
    form: &Form,
    field: &str,
    words: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, Invalid> {
    match form.get(field).map(str::trim) {
        None => Ok(None),
        Some(v) => parse(v)
            .map(Some)
            .ok_or_else(|| Invalid::field(field, format!("must be one of {}", words.join(", ")))),
    }
}

/// An optional text as a form gives it: blank clears it.
pub(crate) fn clearable(form: &Form, field: &str) -> Option<Option<String>> {
    form.get(field)
        .map(|v| Some(v.trim().to_string()).filter(|v| !v.is_empty()))
}

impl FromForm for SettingsPatch {
    /// Every bad field is reported at once.
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let mut errors = Invalid::default();
        let mode = errors.collect(one_of(form, "mode", Mode::WORDS, Mode::parse)).flatten();
        let numbering = errors
            .collect(one_of(form, "numbering", Numbering::WORDS, Numbering::parse))
            .flatten();
        let payment_gateway = errors
            .collect(one_of(form, "payment_gateway", GatewayKind::WORDS, GatewayKind::parse))
            .flatten();
        let currency = match form.get("currency").map(|c| c.trim().to_ascii_uppercase()) {
            Some(c) if minor_units(&c).is_some() => Some(c),
            Some(_) => {
                errors.push("currency", "must be an ISO 4217 currency code, e.g. USD");
                None
            }
            None => None,
        };
        let charging_enabled = errors.collect(form.flag("charging_enabled")).flatten();
        errors.or(SettingsPatch {
            mode,
            currency,
            charging_enabled,
            invoice_footnote: clearable(form, "invoice_footnote"),
            vat_zero_text: clearable(form, "vat_zero_text"),
            numbering,
            payment_gateway,
        })
    }
}

impl Settings {
    pub fn apply(&mut self, patch: SettingsPatch) {
        if let Some(v) = patch.mode {
            self.mode = v;
        }
        if let Some(v) = patch.currency {
            self.currency = v;
        }
        if let Some(v) = patch.charging_enabled {
            self.charging_enabled = v;
        }
        if let Some(v) = patch.invoice_footnote {
            self.invoice_footnote = v;
        }
        if let Some(v) = patch.vat_zero_text {
            self.vat_zero_text = v;
        }
        if let Some(v) = patch.numbering {
            self.numbering = v;
        }
        if let Some(v) = patch.payment_gateway {
            self.payment_gateway = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_patch_names_every_bad_field() {
        let bad = Form::of(&[("currency", "XYZ"), ("mode", "weekly"), ("charging_enabled", "maybe")]);
        let Err(Invalid(errors)) = SettingsPatch::from_form(&bad) else {
            unreachable!("the patch is invalid")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["mode", "currency", "charging_enabled"]);
        let ok = SettingsPatch::from_form(&Form::of(&[("currency", "jpy"), ("invoice_footnote", " ")]));
        let mut s = Settings::default();
        s.apply(ok.unwrap_or_default());
        assert_eq!((s.currency.as_str(), s.invoice_footnote), ("JPY", None));
    }
}
