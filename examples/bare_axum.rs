//! The bare axum baseline of the macro benchmark (`benches/macro/`): the two
//! benchmarked endpoints of Pulse, answering the same bytes, with nothing else —
//! no middleware, no instrumentation, no logging. An example, so it is never
//! installed or shipped; `cargo test --all-targets` builds it, so it keeps compiling.
//!
//! ```text
//! cargo run --release --example bare_axum -- --addr 127.0.0.1:8090
//! ```
//!
//! - `GET /api/users`: `{"users":[{"id","name","email"},...],"count":20}`, the same 20
//!   users the benchmark creates in Pulse (`User 1`, `user1@example.com`, ...), kept in
//!   an ordered map behind a `RwLock` and serialised straight from the read guard: no
//!   record is copied per request, as a performance-minded axum engineer would write
//!   it. (Until 2026-12 this baseline cloned the users per request, as Pulse's store
//!   does, which hid that cost from the comparison: docs/performance.md.)
//! - `GET /status/{code}`: `{"status":code}` with that status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Serialize, Serializer};

/// How many users the benchmark stores (Pulse is seeded with the same ones).
const USERS: u64 = 20;

#[derive(Serialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

/// The stored users, serialised as a JSON array in id order without collecting them.
struct UserSeq<'a>(&'a BTreeMap<u64, User>);

impl Serialize for UserSeq<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.values())
    }
}

#[derive(Serialize)]
struct UserList<'a> {
    users: UserSeq<'a>,
    count: usize,
}

#[derive(Serialize)]
struct StatusBody {
    status: u16,
}

type Users = Arc<RwLock<BTreeMap<u64, User>>>;

/// Serialises under the read guard (readers never wait for each other), into one
/// buffer that becomes the body: the only per-request allocation of the answer.
async fn list_users(State(users): State<Users>) -> Response {
    let users = users
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let list = UserList {
        users: UserSeq(&users),
        count: users.len(),
    };
    match serde_json::to_vec(&list) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn status(Path(code): Path<String>) -> Response {
    match code.parse::<u16>().map(StatusCode::from_u16) {
        Ok(Ok(status)) => (
            status,
            Json(StatusBody {
                status: status.as_u16(),
            }),
        )
            .into_response(),
        _ => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn addr() -> SocketAddr {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:8090".to_owned();
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--addr", Some(value)) => addr = value,
            _ => {
                eprintln!("usage: bare_axum [--addr HOST:PORT]");
                std::process::exit(2);
            }
        }
    }
    addr.parse().unwrap_or_else(|e| {
        eprintln!("bare_axum: --addr {addr}: {e}");
        std::process::exit(2);
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::io::Result<()> {
    let addr = addr();
    let users: Users = Arc::new(RwLock::new(
        (1..=USERS)
            .map(|id| {
                let user = User {
                    id,
                    name: format!("User {id}"),
                    email: format!("user{id}@example.com"),
                };
                (id, user)
            })
            .collect(),
    ));
    let app = Router::new()
        .route("/api/users", get(list_users))
        .route("/status/{code}", get(status))
        .with_state(users);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}
