//! What the load generator sends: named request mixes.

use std::sync::atomic::{AtomicU64, Ordering};

use clap::ValueEnum;
use rand::Rng;

/// A request mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mix {
    /// Realistic traffic: users and data CRUD, items, legacy gauges, calls across services
    /// (`/api/backend`, 5%), about 5% 4xx, and a rare
    /// `/api/error` (0.05%) and `/api/slow` (0.2%) - visible on the dashboards, yet well inside
    /// the default SLOs, so a lab running it all day does not page.
    Default,
    /// Only `GET /api/users`: the benchmark workload.
    Users,
    /// Only `POST /api/users`, each a new user: the store's write path (the benchmark's
    /// write workload).
    Create,
    /// An alert drill: 10% `/api/error` and 5% slow requests.
    Errors,
}

/// One request to make.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// HTTP method.
    pub method: reqwest::Method,
    /// Path and query.
    pub path: String,
    /// JSON body, if any.
    pub json: Option<String>,
}

impl Planned {
    fn get(path: impl Into<String>) -> Self {
        Self {
            method: reqwest::Method::GET,
            path: path.into(),
            json: None,
        }
    }

    fn with(method: reqwest::Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            json: None,
        }
    }
}

/// Weighted choices of the default mix, in ten-thousandths.
const DEFAULT_WEIGHTS: [(u32, Kind); 19] = [
    (2400, Kind::ListUsers),
    (500, Kind::Backend),
    (800, Kind::CreateUser),
    (1000, Kind::GetUser),
    (400, Kind::UpdateUser),
    (100, Kind::DeleteUser),
    (900, Kind::PutItem),
    (500, Kind::ListItems),
    (800, Kind::GetItem),
    (100, Kind::DeleteItem),
    (600, Kind::Item),
    (300, Kind::Update),
    (300, Kind::Cpu),
    (500, Kind::Version),
    (150, Kind::BadId),
    (150, Kind::NegativeUsers),
    (175, Kind::Unknown),
    (5, Kind::Error),
    (20, Kind::Slow),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    ListUsers,
    CreateUser,
    GetUser,
    UpdateUser,
    DeleteUser,
    PutItem,
    ListItems,
    GetItem,
    DeleteItem,
    Item,
    Update,
    Cpu,
    Version,
    Backend,
    BadId,
    NegativeUsers,
    Unknown,
    Error,
    Slow,
}

/// A mix plus what it has created, so reads and updates aim at users that exist.
#[derive(Debug)]
pub struct Generator {
    mix: Mix,
    /// Users created so far. Pulse numbers users 1, 2, 3...: with one generator per
    /// Pulse, the newest ids are the ones that exist.
    created: AtomicU64,
}

impl Generator {
    /// A generator for `mix`.
    pub fn new(mix: Mix) -> Self {
        Self {
            mix,
            created: AtomicU64::new(0),
        }
    }

    /// Picks the next request.
    pub fn next(&self, rng: &mut impl Rng) -> Planned {
        match self.mix {
            Mix::Users => Planned::get("/api/users"),
            Mix::Create => {
                let id = self.created.fetch_add(1, Ordering::Relaxed) + 1;
                Planned::with(
                    reqwest::Method::POST,
                    format!("/api/users?name=User{id}&email=user{id}@example.com"),
                )
            }
            Mix::Default => self.pick(rng),
            Mix::Errors => match rng.random_range(0..100) {
                0..10 => Planned::get("/api/error"),
                10..15 => Planned::get("/delay/0.8"),
                _ => self.pick(rng),
            },
        }
    }

    /// One of the 50 most recently created ids (1 before any exists).
    fn recent_id(&self, rng: &mut impl Rng) -> u64 {
        let created = self.created.load(Ordering::Relaxed);
        created
            .saturating_sub(rng.random_range(0..created.clamp(1, 50)))
            .max(1)
    }

    fn pick(&self, rng: &mut impl Rng) -> Planned {
        let kind = pick_kind(rng, &DEFAULT_WEIGHTS);
        if matches!(kind, Kind::CreateUser) {
            self.created.fetch_add(1, Ordering::Relaxed);
        }
        build(kind, self.recent_id(rng), rng)
    }
}

fn pick_kind(rng: &mut impl Rng, weights: &[(u32, Kind)]) -> Kind {
    let total: u32 = weights.iter().map(|(w, _)| w).sum();
    let mut roll = rng.random_range(0..total);
    weights
        .iter()
        .find(|(w, _)| {
            if roll < *w {
                true
            } else {
                roll -= w;
                false
            }
        })
        .map_or(Kind::ListUsers, |(_, k)| *k)
}

fn build(kind: Kind, recent_id: u64, rng: &mut impl Rng) -> Planned {
    use reqwest::Method;
    let id = rng.random_range(1..10_000);
    let key = format!("key-{}", rng.random_range(0..40));
    match kind {
        Kind::ListUsers => Planned::get("/api/users"),
        Kind::CreateUser => Planned::with(
            Method::POST,
            format!("/api/users?name=User{id}&email=user{id}@example.com"),
        ),
        Kind::GetUser => Planned::get(format!("/api/users/{recent_id}")),
        Kind::UpdateUser => Planned::with(
            Method::PUT,
            format!("/api/users/{recent_id}?name=Renamed{id}"),
        ),
        Kind::DeleteUser => Planned::with(Method::DELETE, format!("/api/users/{recent_id}")),
        Kind::PutItem => Planned {
            method: Method::POST,
            path: "/data".into(),
            json: Some(format!(
                r#"{{"key":"{key}","value":"{}"}}"#,
                "x".repeat(rng.random_range(1..512))
            )),
        },
        Kind::ListItems => Planned::get("/data"),
        Kind::GetItem => Planned::get(format!("/data/{key}")),
        Kind::DeleteItem => Planned::with(Method::DELETE, format!("/data/{key}")),
        Kind::Item => Planned::get(format!("/items/{id}?q=search")),
        Kind::Update => Planned::get(format!("/update?users={}", rng.random_range(0..500))),
        Kind::Cpu => Planned::get(format!("/cpu?value={:.1}", rng.random_range(0.0..100.0))),
        Kind::Version => Planned::get("/version"),
        Kind::Backend => Planned::get("/api/backend"),
        Kind::BadId => Planned::get("/api/users/not-a-number"),
        Kind::NegativeUsers => Planned::get("/update?users=-1"),
        Kind::Unknown => Planned::get(format!("/no/such/page/{id}")),
        Kind::Error => Planned::get("/api/error"),
        Kind::Slow => Planned::get("/api/slow"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_default_mix_is_mostly_successful_with_rare_failures() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let generator = Generator::new(Mix::Default);
        let picks: Vec<Planned> = (0..100_000).map(|_| generator.next(&mut rng)).collect();
        let share = |path: &str| picks.iter().filter(|p| p.path == path).count() as f64 / 1000.0;
        assert!(
            (0.02..0.1).contains(&share("/api/error")),
            "{}%",
            share("/api/error")
        );
        assert!(
            (0.1..0.3).contains(&share("/api/slow")),
            "{}%",
            share("/api/slow")
        );
        assert!(share("/api/users") > 20.0);
        assert!(
            (3.0..7.0).contains(&share("/api/backend")),
            "{}%",
            share("/api/backend")
        );
        assert!(picks.iter().any(|p| p.json.is_some()));
    }

    #[test]
    fn the_create_mix_creates_a_new_user_each_time() {
        let mut rng = rand::rng();
        let generator = Generator::new(Mix::Create);
        let (first, second) = (generator.next(&mut rng), generator.next(&mut rng));
        assert_eq!(first.method, reqwest::Method::POST);
        assert!(
            first.path.starts_with("/api/users?name=User1&"),
            "{}",
            first.path
        );
        assert!(
            second.path.starts_with("/api/users?name=User2&"),
            "{}",
            second.path
        );
    }

    #[test]
    fn the_users_mix_is_one_request() {
        let mut rng = rand::rng();
        assert_eq!(
            Generator::new(Mix::Users).next(&mut rng),
            Planned::get("/api/users")
        );
    }
}
