//! The sandbox's checkout page, rendered from a [`PaymentIntent`] alone:
//! `GET /sandbox/checkout/{intent_id}` shows the amount and a card field; the form posts to
//! the same URL, which confirms the intent (as `POST …/confirm` does) and shows the
//! outcome (the handlers are in [`super::sandbox_routes`]). Plain HTML with no script, so
//! it works in any browser and in `curl`. These pages answer HTML, errors included: they are for
//! people, not for API clients. An optional `?return_to=/path` (a path on this origin, as
//! the fan's booking page passes) adds a link back to it.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::problem::ApiError;

use super::{IntentStatus, PaymentIntent, CARD_DECLINED, CARD_SUCCEEDS};

/// Currencies whose amounts have no minor unit (Stripe's list).
const ZERO_DECIMAL_CURRENCIES: [&str; 16] = [
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];

/// Longest `return_to` path accepted.
const MAX_RETURN_TO_BYTES: usize = 512;

/// A path on this origin to link back to; anything else (another origin, `//host`,
/// `/\host`) is dropped rather than becoming an open redirect.
pub(crate) fn back_link(return_to: Option<String>) -> Option<String> {
    let path = return_to?;
    let on_this_origin = path.starts_with('/')
        && !path.starts_with("//")
        && !path.contains('\\')
        && path.len() <= MAX_RETURN_TO_BYTES;
    on_this_origin.then_some(path)
}

/// The page for `intent`: the form while it can be paid, else its outcome; `back` is a
/// link back to where the payer came from.
pub(crate) fn page(
    status: StatusCode,
    intent: &PaymentIntent,
    form_error: Option<&str>,
    back: Option<&str>,
) -> Response {
    let amount = escape(&format_amount(intent.amount, &intent.currency));
    let booking = escape(&intent.booking_id);
    let intent_id = escape(&intent.intent_id);
    let body = match intent.status {
        IntentStatus::RequiresPaymentMethod => {
            let error = form_error
                .map(|message| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message)))
                .unwrap_or_default();
            format!(
                "<h1>Pay {amount}</h1>\
                 <p>Booking <code>{booking}</code></p>\
                 {error}\
                 <form method=\"post\">\
                 <label for=\"card_number\">Card number</label>\
                 <input id=\"card_number\" name=\"card_number\" inputmode=\"numeric\" \
                 autocomplete=\"cc-number\" placeholder=\"4242 4242 4242 4242\" required autofocus>\
                 <button type=\"submit\">Pay {amount}</button>\
                 </form>\
                 <p class=\"hint\">Sandbox test cards: <code>{CARD_SUCCEEDS}</code> succeeds, \
                 <code>{CARD_DECLINED}</code> is declined.</p>"
            )
        }
        IntentStatus::Succeeded => format!(
            "<h1 class=\"ok\">Payment succeeded</h1><p>{amount} paid for booking <code>{booking}</code>.</p>"
        ),
        IntentStatus::Failed => format!(
            "<h1 class=\"error\">Card declined</h1><p>Nothing was charged for booking <code>{booking}</code>.</p>"
        ),
        IntentStatus::Refunded => format!(
            "<h1>Payment refunded</h1><p>{amount} for booking <code>{booking}</code> was given back.</p>"
        ),
    };
    let back = back
        .map(|path| {
            format!(
                "<p><a id=\"return\" href=\"{}\">Back to your booking</a></p>",
                escape(path)
            )
        })
        .unwrap_or_default();
    html(
        status,
        &format!("{body}{back}<p class=\"hint\">Payment <code>{intent_id}</code></p>"),
    )
}

pub(crate) fn error_page(error: ApiError) -> Response {
    let status = error.into_response().status();
    let message = match status {
        StatusCode::NOT_FOUND => "There is no such payment.",
        StatusCode::CONFLICT => "This payment can no longer be paid.",
        StatusCode::SERVICE_UNAVAILABLE => "The sandbox is busy. Please try again in a moment.",
        _ => "Something went wrong.",
    };
    html(status, &format!("<h1>{}</h1>", escape(message)))
}

fn html(status: StatusCode, body: &str) -> Response {
    let document = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>boxoffice sandbox checkout</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#222}}\
         label{{display:block;margin:1rem 0 .3rem}}\
         input{{width:100%;box-sizing:border-box;padding:.6rem;font-size:1.1rem;letter-spacing:.05em}}\
         button{{margin-top:1rem;width:100%;padding:.7rem;font-size:1.1rem;background:#3b5bdb;color:#fff;border:0;border-radius:.3rem;cursor:pointer}}\
         .error{{color:#c92a2a}}.ok{{color:#2b8a3e}}.hint{{color:#666;font-size:.9rem}}\
         </style></head><body><p class=\"hint\">boxoffice payment sandbox</p>{body}</body></html>"
    );
    (status, Html(document)).into_response()
}

/// `12950 USD` → `129.50 USD`; `500 JPY` → `500 JPY`.
fn format_amount(amount: u64, currency: &str) -> String {
    if ZERO_DECIMAL_CURRENCIES.contains(&currency) {
        format!("{amount} {currency}")
    } else {
        format!("{}.{:02} {currency}", amount / 100, amount % 100)
    }
}

/// Escapes text for HTML element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_use_the_currency_minor_unit() {
        assert_eq!(format_amount(12_950, "USD"), "129.50 USD");
        assert_eq!(format_amount(5, "EUR"), "0.05 EUR");
        assert_eq!(format_amount(500, "JPY"), "500 JPY");
    }

    #[test]
    fn back_links_stay_on_this_origin() {
        let back = |path: &str| back_link(Some(path.to_owned()));
        assert_eq!(back("/bookings/bk_1").as_deref(), Some("/bookings/bk_1"));
        assert_eq!(back("//evil.example/x"), None);
        assert_eq!(back("/\\evil.example/x"), None);
        assert_eq!(back("https://evil.example/"), None);
        assert_eq!(back("javascript:alert(1)"), None);
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
