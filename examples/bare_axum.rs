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
//!   a mutex-guarded ordered map and cloned per request, as Pulse's in-memory store does.
//! - `GET /status/{code}`: `{"status":code}` with that status.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// How many users the benchmark stores (Pulse is seeded with the same ones).
const USERS: u64 = 20;

#[derive(Clone, Serialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[derive(Serialize)]
struct UserList {
    users: Vec<User>,
    count: usize,
}

#[derive(Serialize)]
struct StatusBody {
    status: u16,
}

type Users = Arc<Mutex<BTreeMap<u64, User>>>;

async fn list_users(State(users): State<Users>) -> Json<UserList> {
    let users: Vec<User> = users
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .values()
        .cloned()
        .collect();
    Json(UserList {
        count: users.len(),
        users,
    })
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
    let users: Users = Arc::new(Mutex::new(
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
