//! The rules of purchase events: ISO-4217 currencies, decimal prices, and the items array each
//! of whose entries follows the same rules. The transformer applies them to every row.

use serde_json::{Map, Value};

/// Active ISO-4217 currency codes.
pub const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// The currency code upper-cased, if it is an ISO-4217 code.
pub fn currency(value: &str) -> Option<String> {
    let code = value.trim().to_ascii_uppercase();
    CURRENCIES.binary_search(&code.as_str()).ok().map(|_| code)
}

/// A non-negative decimal in canonical form (`019.50` → `19.50`), or `None`.
pub fn price(value: &str) -> Option<String> {
    let value = value.trim();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 18 {
        return None;
    }
    if value.contains('.') && fraction.is_empty() {
        return None;
    }
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    if whole.len() > 20 {
        return None;
    }
    Some(if fraction.is_empty() {
        whole.to_string()
    } else {
        format!("{whole}.{fraction}")
    })
}

/// Checks an items array: each item an object with a non-empty `product_id`, an ISO-4217
/// `currency`, a decimal `price` (number or string) and an optional positive integer
/// `quantity`. Returns the array with currencies upper-cased, or why it is not valid.
pub fn items(text: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("items is not valid JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("items is not a JSON array".to_string());
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(mut item) = item else {
            return Err(format!("items[{i}] is not an object"));
        };
        check_item(i, &mut item)?;
        out.push(Value::Object(item));
    }
    Ok(Value::Array(out))
}

fn check_item(i: usize, item: &mut Map<String, Value>) -> Result<(), String> {
    match item.get("product_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => {}
        Some(Value::Number(_)) => {}
        _ => return Err(format!("items[{i}].product_id is missing or empty")),
    }
    let code = match item.get("currency") {
        Some(Value::String(s)) => currency(s),
        _ => None,
    }
    .ok_or_else(|| format!("items[{i}].currency is not an ISO-4217 code"))?;
    item.insert("currency".to_string(), Value::String(code));
    let valid_price = match item.get("price") {
        Some(Value::Number(n)) => n.as_f64().is_some_and(|p| p >= 0.0),
        Some(Value::String(s)) => price(s).is_some(),
        _ => false,
    };
    if !valid_price {
        return Err(format!("items[{i}].price is not a non-negative decimal"));
    }
    match item.get("quantity") {
        None => {}
        Some(Value::Number(n)) if n.as_u64().is_some_and(|q| q > 0) => {}
        Some(_) => return Err(format!("items[{i}].quantity is not a positive integer")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_are_sorted_and_checked() {
        assert!(CURRENCIES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(currency(" eur "), Some("EUR".to_string()));
        assert_eq!(currency("EURO"), None);
        assert_eq!(currency("XYZ"), None);
    }

    #[test]
    fn prices_are_non_negative_decimals() {
        assert_eq!(price("019.50"), Some("19.50".to_string()));
        assert_eq!(price("0"), Some("0".to_string()));
        assert_eq!(price(" 7 "), Some("7".to_string()));
        for bad in ["-1", "1.", ".5", "1e3", "abc", "", "1,50"] {
            assert_eq!(price(bad), None, "{bad}");
        }
    }

    #[test]
    fn items_are_validated_one_by_one() {
        let good = items(r#"[{"product_id": "p1", "currency": "usd", "price": 9.5, "quantity": 2}, {"product_id": "p2", "currency": "EUR", "price": "3.10"}]"#).unwrap();
        assert_eq!(good[0]["currency"], "USD");
        assert!(items(r#"{"product_id": "p1"}"#)
            .unwrap_err()
            .contains("array"));
        assert!(
            items(r#"[{"product_id": "", "currency": "USD", "price": 1}]"#)
                .unwrap_err()
                .contains("items[0].product_id")
        );
        assert!(items(r#"[{"product_id": "a", "currency": "USD", "price": 1}, {"product_id": "b", "currency": "US", "price": 1}]"#)
            .unwrap_err()
            .contains("items[1].currency"));
        assert!(
            items(r#"[{"product_id": "a", "currency": "USD", "price": -1}]"#)
                .unwrap_err()
                .contains("price")
        );
        assert!(
            items(r#"[{"product_id": "a", "currency": "USD", "price": 1, "quantity": 0}]"#)
                .unwrap_err()
                .contains("quantity")
        );
    }
}
