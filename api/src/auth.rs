//! Bearer-token authentication: HS256 JWTs with claims `{sub, role, iat, exp}`, issued and
//! checked against an injected [`Clock`]; the [`User`] and [`Admin`] extractors; and the
//! dev-mode token issuer `POST /v1/auth/token`.
//!
//! Expiry is checked here, not by `jsonwebtoken` (whose check reads the system clock), so
//! simulated time governs tokens too. `iat` and `exp` are JWT NumericDates (seconds); a
//! token is expired from the first millisecond of its `exp` second on.
//!
//! Over 600 lines, half of them the tests of every way a token can be refused.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap};
use axum::routing::{any, post};
use axum::Router;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::{rfc3339_from_ms, Clock};
use crate::extract::ApiJson;
use crate::problem::ApiError;

/// Default lifetime of an issued token.
pub const TOKEN_TTL_MS: u64 = 60 * 60 * 1000;

/// Shortest HS256 secret accepted: the hash's output size (RFC 7518 §3.2).
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest bearer token read; anything longer is refused without parsing.
pub const MAX_TOKEN_BYTES: usize = 4 * 1024;

/// Longest user id the dev issuer accepts.
pub const MAX_USER_ID_BYTES: usize = 64;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    User,
    Admin,
}

/// The claims of every token this crate issues and accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub role: Role,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// A freshly signed token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at_ms: u64,
}

/// Signs and checks tokens with one shared secret. Handlers reach it through
/// `Arc<Auth>: FromRef<S>` on the router state.
pub struct Auth {
    encoding_key: EncodingKey,
    decoding_key: DecodingKey,
    validation: Validation,
    clock: Arc<dyn Clock>,
    token_ttl_ms: u64,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the keys.
        f.debug_struct("Auth")
            .field("token_ttl_ms", &self.token_ttl_ms)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// An authority for `secret` (at least [`MIN_SECRET_BYTES`]) that issues tokens living
    /// [`TOKEN_TTL_MS`].
    pub fn new(secret: &[u8], clock: Arc<dyn Clock>) -> Result<Self, ApiError> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(ApiError::Internal(format!(
                "jwt secret has {} bytes, needs at least {MIN_SECRET_BYTES}",
                secret.len()
            )));
        }
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry and not-before are checked against the injected clock in `verify`.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        // Our tokens carry no audience; an identity provider's audience is its own config.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["sub", "exp"]);
        Ok(Self {
            encoding_key: EncodingKey::from_secret(secret),
            decoding_key: DecodingKey::from_secret(secret),
            validation,
            clock,
            token_ttl_ms: TOKEN_TTL_MS,
        })
    }

    pub fn with_token_ttl_ms(mut self, token_ttl_ms: u64) -> Self {
        self.token_ttl_ms = token_ttl_ms;
        self
    }

    pub fn token_ttl_ms(&self) -> u64 {
        self.token_ttl_ms
    }

    /// Signs a token for `user_id` with `role`, valid from now for the configured TTL.
    pub fn issue(&self, user_id: &str, role: Role) -> Result<IssuedToken, ApiError> {
        let now_ms = self.clock.now_ms();
        let expires_at_ms = now_ms.saturating_add(self.token_ttl_ms);
        let claims = Claims {
            sub: user_id.to_owned(),
            role,
            iat: now_ms / 1000,
            exp: expires_at_ms / 1000,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding_key)
                .map_err(|error| ApiError::Internal(format!("signing a token failed: {error}")))?;
        // Report the instant the token really stops working: the start of its exp second.
        Ok(IssuedToken {
            token,
            expires_at_ms: claims.exp.saturating_mul(1000),
        })
    }

    /// Checks a token's signature, algorithm, claims and expiry; 401 if any is wrong.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        self.verify_token(token).map_err(unauthorized)
    }

    fn verify_token(&self, token: &str) -> Result<Claims, &'static str> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("bearer token too long");
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding_key, &self.validation)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                match error.kind() {
                    ErrorKind::InvalidSignature => "invalid token signature",
                    ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
                    _ => "malformed token",
                }
            })?
            .claims;
        if self.clock.now_ms() / 1000 >= claims.exp {
            return Err("token expired");
        }
        Ok(claims)
    }

    /// Reads `Authorization: Bearer <token>` and verifies the token.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Claims, ApiError> {
        self.verify_headers(headers).map_err(unauthorized)
    }

    fn verify_headers(&self, headers: &HeaderMap) -> Result<Claims, &'static str> {
        self.verify_token(bearer_token(headers)?)
    }

    /// The caller of a request, its token verified at most once per request: the outcome
    /// is kept in the request's `extensions`, so the rate limiter (which keys on the user)
    /// and the [`User`] or [`Admin`] extractor after it share one signature check.
    pub fn authenticate_request(
        &self,
        headers: &HeaderMap,
        extensions: &mut Extensions,
    ) -> Result<Claims, ApiError> {
        if let Some(Authenticated(outcome)) = extensions.get::<Authenticated>() {
            return outcome.clone().map_err(unauthorized);
        }
        let outcome = self.verify_headers(headers);
        extensions.insert(Authenticated(outcome.clone()));
        outcome.map_err(unauthorized)
    }
}

/// A request's verified token (or why it was refused), cached in its extensions by
/// [`Auth::authenticate_request`].
#[derive(Debug, Clone)]
struct Authenticated(Result<Claims, &'static str>);

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Result<&str, &'static str> {
    let value = headers.get(AUTHORIZATION).ok_or("missing bearer token")?;
    let value = value
        .to_str()
        .map_err(|_| "authorization header is not ascii")?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or("authorization header is not a bearer token")?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err("authorization header is not a bearer token");
    }
    let token = token.trim();
    if token.is_empty() {
        return Err("missing bearer token");
    }
    Ok(token)
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized {
        detail: detail.to_owned(),
    }
}

/// Extractor: the caller, holding any valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub role: Role,
}

impl<S> FromRequestParts<S> for User
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let claims = Arc::<Auth>::from_ref(state)
            .authenticate_request(&parts.headers, &mut parts.extensions)?;
        Ok(User {
            id: claims.sub,
            role: claims.role,
        })
    }
}

/// Extractor: the caller, holding a valid token with role admin; 403 for other roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub id: String,
}

impl<S> FromRequestParts<S> for Admin
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let claims = Arc::<Auth>::from_ref(state)
            .authenticate_request(&parts.headers, &mut parts.extensions)?;
        match claims.role {
            Role::Admin => Ok(Admin { id: claims.sub }),
            Role::User => Err(ApiError::Forbidden {
                detail: "this needs role admin".to_owned(),
            }),
        }
    }
}

/// Body of `POST /v1/auth/token`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// 1..=64 of ASCII letters, digits and `. _ - @`.
    #[schema(example = "alice", min_length = 1, max_length = 64)]
    pub user: String,
    #[serde(default)]
    pub role: Role,
}

/// Answer of `POST /v1/auth/token`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    pub token_type: String,
    pub user: String,
    pub role: Role,
    /// RFC 3339 UTC.
    pub expires_at: String,
    pub expires_in_seconds: u64,
}

/// Issues a token to anyone: dev mode only (404 otherwise; production tokens come from
/// the operator's identity provider).
#[utoipa::path(
    post, operation_id = "issueDevToken", path = "/v1/auth/token", tag = "auth",
    request_body = TokenRequest,
    responses((status = 200, description = "A bearer token", body = TokenResponse))
)]
pub async fn issue_dev_token(
    State(auth): State<Arc<Auth>>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<ApiJson<TokenResponse>, ApiError> {
    validate_user_id(&request.user)?;
    let issued = auth.issue(&request.user, request.role)?;
    let expires_in_seconds = issued.expires_at_ms.saturating_sub(auth.clock.now_ms()) / 1000;
    Ok(ApiJson(TokenResponse {
        token: issued.token,
        token_type: "Bearer".to_owned(),
        user: request.user,
        role: request.role,
        expires_at: rfc3339_from_ms(issued.expires_at_ms),
        expires_in_seconds,
    }))
}

fn validate_user_id(user: &str) -> Result<(), ApiError> {
    if user.is_empty() || user.len() > MAX_USER_ID_BYTES {
        return Err(ApiError::invalid_field(
            "user",
            format!("user must be 1 to {MAX_USER_ID_BYTES} bytes"),
        ));
    }
    if !user
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
    {
        return Err(ApiError::invalid_field(
            "user",
            "user may contain only ascii letters, digits and . _ - @",
        ));
    }
    Ok(())
}

async fn dev_issuer_disabled() -> ApiError {
    ApiError::not_found("token issuing is available only in dev mode")
}

/// The `/v1/auth/token` route: the dev issuer when `dev_mode`, otherwise a 404 for every
/// method.
pub fn auth_routes<S>(dev_mode: bool) -> Router<S>
where
    Arc<Auth>: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    if dev_mode {
        Router::new().route("/v1/auth/token", post(issue_dev_token))
    } else {
        Router::new().route("/v1/auth/token", any(dev_issuer_disabled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::problem::with_problem_fallbacks;
    use axum::body::Body;
    use axum::extract::Request;
    use axum::http::{header, Method, StatusCode};
    use axum::routing::get;
    use serde_json::{json, Value};
    use tower::ServiceExt;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const START_MS: u64 = 1_800_000_000_000;

    fn authority() -> (Arc<ManualClock>, Arc<Auth>) {
        let clock = Arc::new(ManualClock::new(START_MS));
        let auth = Auth::new(SECRET, clock.clone()).expect("secret is long enough");
        (clock, Arc::new(auth))
    }

    fn app(auth: Arc<Auth>, dev_mode: bool) -> Router {
        let router = Router::new()
            .route("/me", get(|user: User| async move { user.id }))
            .route("/admin", get(|admin: Admin| async move { admin.id }))
            .merge(auth_routes(dev_mode));
        with_problem_fallbacks(router).with_state(auth)
    }

    async fn call(app: Router, request: Request) -> (StatusCode, Value) {
        let response = app.oneshot(request).await.expect("router is infallible");
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    fn with_token(uri: &str, authorization: &str) -> Request {
        Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, authorization)
            .body(Body::empty())
            .expect("request")
    }

    fn token_request(body: Value) -> Request {
        Request::builder()
            .method(Method::POST)
            .uri("/v1/auth/token")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .expect("request")
    }

    #[test]
    fn issued_token_verifies_with_the_chosen_crypto_backend() {
        let (_, auth) = authority();
        let issued = auth.issue("alice", Role::User).expect("issue");
        let claims = auth.verify(&issued.token).expect("verify");
        assert_eq!(
            claims,
            Claims {
                sub: "alice".into(),
                role: Role::User,
                iat: START_MS / 1000,
                exp: (START_MS + TOKEN_TTL_MS) / 1000,
            }
        );
        assert_eq!(issued.expires_at_ms, START_MS + TOKEN_TTL_MS);
    }

    #[test]
    fn expiry_follows_the_injected_clock() {
        let (clock, auth) = authority();
        let token = auth.issue("alice", Role::User).expect("issue").token;
        clock.advance_ms(TOKEN_TTL_MS - 1);
        assert!(auth.verify(&token).is_ok());
        clock.advance_ms(1);
        let error = auth.verify(&token).expect_err("expired");
        assert!(
            matches!(error, ApiError::Unauthorized { ref detail } if detail == "token expired")
        );
    }

    #[test]
    fn ttl_is_configurable() {
        let clock = Arc::new(ManualClock::new(START_MS));
        let auth = Auth::new(SECRET, clock.clone())
            .expect("auth")
            .with_token_ttl_ms(5_000);
        assert_eq!(auth.token_ttl_ms(), 5_000);
        let token = auth.issue("bob", Role::Admin).expect("issue").token;
        clock.advance_ms(5_000);
        assert!(auth.verify(&token).is_err());
    }

    #[test]
    fn foreign_tampered_and_unsigned_tokens_are_refused() {
        let (clock, auth) = authority();
        let token = auth.issue("alice", Role::User).expect("issue").token;

        let other = Auth::new(b"another secret of thirty-two bytes!", clock).expect("auth");
        let foreign = other.issue("alice", Role::Admin).expect("issue").token;
        assert!(matches!(
            auth.verify(&foreign),
            Err(ApiError::Unauthorized { .. })
        ));

        // Swap the payload for one claiming admin, keep the signature.
        let parts: Vec<&str> = token.split('.').collect();
        let admin_payload = foreign.split('.').nth(1).unwrap_or_default();
        let tampered = format!("{}.{}.{}", parts[0], admin_payload, parts[2]);
        assert!(matches!(
            auth.verify(&tampered),
            Err(ApiError::Unauthorized { .. })
        ));

        // alg "none" with no signature.
        let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let unsigned = format!("{none_header}.{}.", parts[1]);
        assert!(matches!(
            auth.verify(&unsigned),
            Err(ApiError::Unauthorized { .. })
        ));

        // Same secret, another algorithm.
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &json!({"sub": "alice", "role": "admin", "iat": 0, "exp": u64::MAX / 2000}),
            &EncodingKey::from_secret(SECRET),
        )
        .expect("encode");
        assert!(matches!(
            auth.verify(&hs384),
            Err(ApiError::Unauthorized { .. })
        ));

        for garbage in [
            "",
            "a.b.c",
            "....",
            "not a token",
            &"x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert!(
                matches!(auth.verify(garbage), Err(ApiError::Unauthorized { .. })),
                "{garbage}"
            );
        }
    }

    #[test]
    fn unknown_role_and_missing_claims_are_refused() {
        let (_, auth) = authority();
        let key = EncodingKey::from_secret(SECRET);
        let header = Header::new(Algorithm::HS256);
        let exp = START_MS / 1000 + 60;
        let root = jsonwebtoken::encode(
            &header,
            &json!({"sub": "x", "role": "root", "iat": 0, "exp": exp}),
            &key,
        );
        let no_exp = jsonwebtoken::encode(
            &header,
            &json!({"sub": "x", "role": "user", "iat": 0}),
            &key,
        );
        for token in [root, no_exp] {
            let token = token.expect("encode");
            assert!(matches!(
                auth.verify(&token),
                Err(ApiError::Unauthorized { .. })
            ));
        }
    }

    #[test]
    fn short_secret_is_refused() {
        let clock = Arc::new(ManualClock::new(0));
        assert!(Auth::new(b"short", clock).is_err());
    }

    #[test]
    fn bearer_header_parsing() {
        let mut headers = HeaderMap::new();
        assert!(bearer_token(&headers).is_err());
        for (value, want) in [
            ("Bearer abc", Some("abc")),
            ("bearer   abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
        ] {
            headers.insert(AUTHORIZATION, value.parse().expect("header value"));
            assert_eq!(bearer_token(&headers).ok(), want, "{value}");
        }
    }

    #[test]
    fn a_request_is_verified_once() {
        let (clock, auth) = authority();
        let token = auth.issue("alice", Role::User).expect("issue").token;
        let mut headers = HeaderMap::new();
        let value = format!("Bearer {token}");
        headers.insert(AUTHORIZATION, value.parse().expect("header value"));
        let mut extensions = Extensions::new();
        let claims = auth.authenticate_request(&headers, &mut extensions);
        assert_eq!(claims.expect("valid").sub, "alice");
        // Past its expiry a fresh check fails, but the request that was verified keeps its
        // outcome: the second reader (the extractor after the rate limiter) does not verify
        // again.
        clock.advance_ms(TOKEN_TTL_MS);
        assert!(auth.authenticate(&headers).is_err());
        let again = auth.authenticate_request(&headers, &mut extensions);
        assert_eq!(again.expect("the kept outcome").sub, "alice");
        let mut fresh = Extensions::new();
        assert!(auth.authenticate_request(&headers, &mut fresh).is_err());
        assert!(auth.authenticate_request(&headers, &mut fresh).is_err());
    }

    #[tokio::test]
    async fn user_extractor_accepts_any_valid_token() {
        let (_, auth) = authority();
        let user = auth.issue("alice", Role::User).expect("issue").token;
        let admin = auth.issue("ops", Role::Admin).expect("issue").token;
        let app = app(auth, true);
        let (status, body) = call(app.clone(), with_token("/me", &format!("Bearer {user}"))).await;
        assert_eq!((status, body), (StatusCode::OK, json!("alice")));
        let (status, body) = call(app, with_token("/me", &format!("Bearer {admin}"))).await;
        assert_eq!((status, body), (StatusCode::OK, json!("ops")));
    }

    #[tokio::test]
    async fn missing_invalid_and_expired_tokens_are_401_problems() {
        let (clock, auth) = authority();
        let token = auth.issue("alice", Role::User).expect("issue").token;
        let app = app(auth, true);

        let no_header = Request::builder()
            .uri("/me")
            .body(Body::empty())
            .expect("request");
        let (status, body) = call(app.clone(), no_header).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["type"], "https://boxoffice.dev/problems/unauthorized");
        assert_eq!(body["detail"], "missing bearer token");

        let (status, _) = call(app.clone(), with_token("/me", "Bearer nonsense")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        clock.advance_ms(TOKEN_TTL_MS);
        let (status, body) = call(app, with_token("/me", &format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["detail"], "token expired");
    }

    #[tokio::test]
    async fn admin_extractor_needs_role_admin() {
        let (_, auth) = authority();
        let user = auth.issue("alice", Role::User).expect("issue").token;
        let admin = auth.issue("ops", Role::Admin).expect("issue").token;
        let app = app(auth, true);
        let (status, body) =
            call(app.clone(), with_token("/admin", &format!("Bearer {user}"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["type"], "https://boxoffice.dev/problems/forbidden");
        let (status, body) = call(
            app.clone(),
            with_token("/admin", &format!("Bearer {admin}")),
        )
        .await;
        assert_eq!((status, body), (StatusCode::OK, json!("ops")));
        let no_header = Request::builder()
            .uri("/admin")
            .body(Body::empty())
            .expect("request");
        let (status, _) = call(app, no_header).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn dev_issuer_issues_user_and_admin_tokens() {
        let (_, auth) = authority();
        let app = app(auth, true);

        let (status, body) = call(app.clone(), token_request(json!({"user": "alice"}))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["role"], "user");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_at"], rfc3339_from_ms(START_MS + TOKEN_TTL_MS));
        assert_eq!(body["expires_in_seconds"], TOKEN_TTL_MS / 1000);
        let token = body["token"].as_str().unwrap_or_default().to_owned();
        let (status, _) = call(
            app.clone(),
            with_token("/admin", &format!("Bearer {token}")),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);

        let (status, body) = call(
            app.clone(),
            token_request(json!({"user": "ops", "role": "admin"})),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let token = body["token"].as_str().unwrap_or_default().to_owned();
        let (status, _) = call(app, with_token("/admin", &format!("Bearer {token}"))).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn dev_issuer_validates_its_body() {
        let (_, auth) = authority();
        let app = app(auth, true);
        for body in [
            json!({"user": ""}),
            json!({"user": "a b"}),
            json!({"user": "x".repeat(MAX_USER_ID_BYTES + 1)}),
            json!({"user": "alice", "role": "root"}),
            json!({"user": "alice", "admin": true}),
            json!({"role": "admin"}),
            json!({"user": 7}),
        ] {
            let (status, problem) = call(app.clone(), token_request(body.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {problem}");
        }
    }

    #[tokio::test]
    async fn issuer_is_404_outside_dev_mode() {
        let (_, auth) = authority();
        let app = app(auth, false);
        let (status, body) = call(app.clone(), token_request(json!({"user": "alice"}))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["type"], "https://boxoffice.dev/problems/not-found");
        let get = Request::builder()
            .uri("/v1/auth/token")
            .body(Body::empty())
            .expect("request");
        let (status, _) = call(app, get).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
