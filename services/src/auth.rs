//! Who is calling: bearer tokens, stored only as blake3 hashes, each mapped to a calling
//! service and its role; and which roles may call what.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tonic::{Request, Status};

/// What a calling service may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The upload gateway: members, records, remixes, citations, member comments.
    Gateway,
    /// The community team's tools: projects, proposals, amendments, staff replies,
    /// finalization.
    Community,
    /// The finance system: productions, inclusion, revenue, expenses, lead fees, payouts.
    Finance,
    /// Read-only: queries, events, audit.
    Auditor,
    /// Administration: projection status and rebuilds, store status.
    Operator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Gateway,
        Role::Community,
        Role::Finance,
        Role::Auditor,
        Role::Operator,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Community => "community",
            Role::Finance => "finance",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(text: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.name() == text)
            .ok_or_else(|| format!("unknown role {text:?}"))
    }
}

/// The authenticated caller, put into each request's extensions by `Authenticator`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub service: String,
    pub role: Role,
}

/// The blake3 of a token, as stored in the config file (64 hex digits).
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::hash(token.as_bytes()).as_bytes()
}

/// A new random token: 32 bytes from the OS, hex.
pub fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Debug, Default)]
pub struct Authenticator {
    callers: HashMap<[u8; 32], Caller>,
}

impl Authenticator {
    pub fn new(callers: impl IntoIterator<Item = ([u8; 32], Caller)>) -> Authenticator {
        Authenticator {
            callers: callers.into_iter().collect(),
        }
    }

    /// The caller a request's `authorization: Bearer <token>` names.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing authorization metadata (Bearer token)")
        })?;
        let header = header
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization metadata is not text"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| Status::unauthenticated("authorization must be 'Bearer <token>'"))?;
        self.callers
            .get(&token_hash(token.trim()))
            .cloned()
            .ok_or_else(|| Status::unauthenticated("unknown token"))
    }

    /// A tonic interceptor: authenticates every call and records the caller.
    pub fn interceptor(&self) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
        let authenticator = self.clone();
        move |mut request: Request<()>| {
            let caller = authenticator.authenticate(&request)?;
            request.extensions_mut().insert(caller);
            Ok(request)
        }
    }
}

/// The authenticated caller of `request`, if its role is one of `allowed`.
pub fn require<T>(request: &Request<T>, allowed: &[Role]) -> Result<Caller, Status> {
    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("the call was not authenticated"))?;
    if allowed.contains(&caller.role) {
        Ok(caller)
    } else {
        let allowed: Vec<&str> = allowed.iter().map(|role| role.name()).collect();
        Err(Status::permission_denied(format!(
            "the {} role may not make this call (allowed: {})",
            caller.role,
            allowed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authenticator() -> (Authenticator, String) {
        let token = generate_token();
        let caller = Caller {
            service: "upload-gateway".into(),
            role: Role::Gateway,
        };
        (Authenticator::new([(token_hash(&token), caller)]), token)
    }

    #[test]
    fn tokens_authenticate_by_hash() {
        let (authenticator, token) = authenticator();
        let mut request = Request::new(());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let caller = authenticator.authenticate(&request).unwrap();
        assert_eq!(caller.role, Role::Gateway);
        let mut wrong = Request::new(());
        wrong
            .metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            authenticator.authenticate(&wrong).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            authenticator
                .authenticate(&Request::new(()))
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn roles_are_checked() {
        let mut request = Request::new(());
        request.extensions_mut().insert(Caller {
            service: "finance".into(),
            role: Role::Finance,
        });
        assert!(require(&request, &[Role::Finance]).is_ok());
        let denied = require(&request, &[Role::Gateway, Role::Community]).unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("allowed: gateway, community"));
    }

    #[test]
    fn roles_parse_and_print() {
        for role in Role::ALL {
            assert_eq!(role.name().parse::<Role>().unwrap(), role);
        }
        assert!("admin".parse::<Role>().is_err());
    }
}
