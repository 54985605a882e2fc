//! `arcusctl` as an operator runs it: the real binary, configured through the
//! environment, against the real Postgres.

use std::process::{Command, Output};

use serde_json::Value;
use uuid::Uuid;

/// A database that exists only for one test and is dropped after it, with
/// the key secret the test's commands run with.
struct Database {
    name: String,
    secret: String,
}

impl Database {
    fn new() -> Self {
        Self {
            name: testkit::unique_name("arcus_cli"),
            secret: format!("cli-test-secret-{}", Uuid::new_v4()),
        }
    }

    fn hasher(&self) -> auth::KeyHasher {
        auth::KeyHasher::new(&self.secret)
    }

    fn url(&self) -> String {
        testkit::with_database(&testkit::local_server_url(), &self.name)
    }

    fn arcusctl(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_arcusctl"))
            .args(args)
            .env("ARCUS__DATABASE__URL", self.url())
            .env("ARCUS__AUTH__KEY_SECRET", &self.secret)
            .output()
            .expect("arcusctl runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.arcusctl(args);
        assert!(
            out.status.success(),
            "arcusctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        testkit::drop_database(&testkit::local_server_url(), &self.name);
    }
}

#[test]
fn db_migrate_creates_the_database_and_is_repeatable() {
    let db = Database::new();
    assert_eq!(db.ok(&["db", "migrate"]), "database is up to date");
    assert_eq!(db.ok(&["db", "migrate"]), "database is up to date");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let applied = runtime.block_on(async {
        let pool = domain::db::connect(&db.url(), 1).await.expect("connects");
        domain::db::migrations_applied(&pool).await.expect("reads")
    });
    assert!(applied);
}

#[test]
fn entity_and_key_create_print_what_a_script_needs() {
    let db = Database::new();
    db.ok(&["db", "migrate"]);
    let entity = db.ok(&["entity", "create", "--name", "Acme"]);
    let entity_id = Uuid::parse_str(&entity).expect("the entity id alone");

    let key = db.ok(&[
        "key",
        "create",
        "--entity",
        &entity,
        "--mode",
        "live",
        "--scopes",
        "migration:read,products:write",
    ]);
    assert!(key.starts_with("ark_live_ent_"), "{key}");

    let json: Value = serde_json::from_str(&db.ok(&[
        "key",
        "create",
        "--entity",
        &entity,
        "--mode",
        "test",
        "--scopes",
        "migration:read",
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(json["entity_id"], entity);
    assert_eq!(json["mode"], "test");
    assert_eq!(json["scopes"], serde_json::json!(["migration:read"]));
    let test_key = json["key"].as_str().expect("key").to_owned();
    assert!(test_key.starts_with(json["prefix"].as_str().expect("prefix")));

    // The printed keys authenticate; the database holds only their hashes.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let pool = domain::db::connect(&db.url(), 1).await.expect("connects");
        let principal = auth::authenticate(&pool, &db.hasher(), &auth::KeyCache::new(), &key, None)
            .await
            .expect("live key works");
        assert_eq!(principal.entity_id, entity_id);
        assert_eq!(principal.mode, domain::Mode::Live);
        assert_eq!(principal.scopes, vec!["migration:read", "products:write"]);
        let stored: Vec<String> = sqlx::query_scalar("select key_hash from api_keys")
            .fetch_all(&pool)
            .await
            .expect("hashes");
        assert!(
            stored
                .iter()
                .all(|h| h != &key && h != &test_key && h.len() == 64)
        );
    });

    let revoked = db.ok(&["key", "revoke", "--id", json["id"].as_str().expect("id")]);
    assert!(revoked.starts_with("revoked"));
    runtime.block_on(async {
        let pool = domain::db::connect(&db.url(), 1).await.expect("connects");
        assert!(
            auth::authenticate(&pool, &db.hasher(), &auth::KeyCache::new(), &test_key, None)
                .await
                .is_err()
        );
    });
}

#[test]
fn bad_input_fails_with_a_message_and_writes_nothing() {
    let db = Database::new();
    db.ok(&["db", "migrate"]);
    let entity = db.ok(&["entity", "create", "--name", "Acme"]);
    for (args, message) in [
        (
            vec![
                "key",
                "create",
                "--entity",
                entity.as_str(),
                "--mode",
                "test",
                "--scopes",
                "everything",
            ],
            "unknown scope 'everything'",
        ),
        (
            vec![
                "key",
                "create",
                "--entity",
                "01900000-0000-7000-8000-000000000000",
                "--mode",
                "test",
                "--scopes",
                "migration:read",
            ],
            "no entity with id",
        ),
        (
            vec![
                "key",
                "create",
                "--entity",
                entity.as_str(),
                "--mode",
                "prod",
                "--scopes",
                "migration:read",
            ],
            "invalid value 'prod'",
        ),
        (
            vec!["entity", "create", "--name", "  "],
            "an entity name must be 1 to 200 characters",
        ),
    ] {
        let out = db.arcusctl(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let pool = domain::db::connect(&db.url(), 1).await.expect("connects");
        let keys: i64 = sqlx::query_scalar("select count(*) from api_keys")
            .fetch_one(&pool)
            .await
            .expect("count");
        let entities: i64 = sqlx::query_scalar("select count(*) from entities")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!((keys, entities), (0, 1));
    });
}

#[test]
fn an_unreachable_database_is_reported() {
    let out = Command::new(env!("CARGO_BIN_EXE_arcusctl"))
        .args(["entity", "create", "--name", "Acme"])
        .env(
            "ARCUS__DATABASE__URL",
            "postgres://postgres@127.0.0.1:1/arcus",
        )
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("connecting to Postgres"));
}

#[test]
fn health_probes_fail_on_a_closed_port() {
    let out = Command::new(env!("CARGO_BIN_EXE_arcusctl"))
        .args(["health", "--url", "http://127.0.0.1:1/readyz"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
}

#[test]
fn health_probes_pass_on_a_2xx_and_fail_on_a_503() {
    for (answer, healthy) in [("200 OK", true), ("503 Service Unavailable", false)] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let url = format!("http://{}/readyz", listener.local_addr().expect("addr"));
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut stream, _) = listener.accept().expect("a probe connects");
            let mut request = [0_u8; 1024];
            let n = stream.read(&mut request).expect("reads");
            assert!(String::from_utf8_lossy(&request[..n]).starts_with("GET /readyz HTTP/1.1"));
            let body =
                format!("HTTP/1.1 {answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            stream.write_all(body.as_bytes()).expect("writes");
        });
        let out = Command::new(env!("CARGO_BIN_EXE_arcusctl"))
            .args(["health", "--url", &url])
            .output()
            .expect("runs");
        server.join().expect("server thread");
        assert_eq!(out.status.success(), healthy, "{answer}");
    }
}

#[test]
fn period_close_records_the_date_and_never_moves_backwards() {
    let db = Database::new();
    db.ok(&["db", "migrate"]);
    let entity = db.ok(&["entity", "create", "--name", "Acme"]);
    assert_eq!(
        db.ok(&[
            "period",
            "close",
            "--entity",
            &entity,
            "--through",
            "2026-03-31"
        ]),
        "books closed through 2026-03-31"
    );
    assert_eq!(
        db.ok(&[
            "period",
            "close",
            "--entity",
            &entity,
            "--through",
            "2026-01-31",
            "--mode",
            "live"
        ]),
        "books closed through 2026-03-31"
    );
    let out = db.arcusctl(&["period", "close", "--entity", &entity, "--through", "March"]);
    assert!(!out.status.success());
    let out = db.arcusctl(&[
        "period",
        "close",
        "--entity",
        "01900000-0000-7000-8000-000000000000",
        "--through",
        "2026-01-31",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no entity with id"));

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let pool = domain::db::connect(&db.url(), 1).await.expect("connects");
        let closes: Vec<(String, chrono::NaiveDate)> =
            sqlx::query_as("select mode, closed_through from period_closes order by mode")
                .fetch_all(&pool)
                .await
                .expect("closes");
        let march = chrono::NaiveDate::from_ymd_opt(2026, 3, 31).expect("date");
        assert_eq!(
            closes,
            vec![("live".to_owned(), march), ("test".to_owned(), march)]
        );
    });
}

#[test]
fn keys_carry_tier_expiry_and_allowlist_and_are_listed_without_secrets() {
    let db = Database::new();
    db.ok(&["db", "migrate"]);
    let entity = db.ok(&["entity", "create", "--name", "Acme"]);
    let created: Value = serde_json::from_str(&db.ok(&[
        "key",
        "create",
        "--entity",
        &entity,
        "--mode",
        "live",
        "--scopes",
        "migration:read",
        "--tier",
        "elevated",
        "--expires",
        "90d",
        "--allow-ip",
        "10.0.0.0/8,192.0.2.1",
        "--json",
    ]))
    .expect("JSON");
    assert_eq!(created["tier"], "elevated");
    assert_eq!(
        created["allowed_ips"],
        serde_json::json!(["10.0.0.0/8", "192.0.2.1/32"])
    );
    let expires =
        chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().expect("expiry"))
            .expect("RFC 3339");
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((89..=90).contains(&days), "{days}");
    let secret = created["key"].as_str().expect("key").to_owned();

    for (args, message) in [
        (
            vec!["--mode", "test", "--tier", "elevated"],
            "only live keys have a tier",
        ),
        (
            vec!["--mode", "live", "--allow-ip", "the office"],
            "is not an IP address or CIDR block",
        ),
        (
            vec!["--mode", "live", "--expires", "2020-01-01T00:00:00Z"],
            "the expiry must be in the future",
        ),
        (
            vec!["--mode", "live", "--expires", "soon"],
            "--expires must",
        ),
    ] {
        let mut full = vec![
            "key",
            "create",
            "--entity",
            entity.as_str(),
            "--scopes",
            "migration:read",
        ];
        full.extend(args.iter().copied());
        let out = db.arcusctl(&full);
        assert!(!out.status.success(), "{full:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(message),
            "{full:?}"
        );
    }

    db.ok(&["key", "revoke", "--id", created["id"].as_str().expect("id")]);
    let listing = db.ok(&["key", "list", "--entity", &entity, "--json"]);
    assert!(
        !listing.contains(&secret[secret.len() - 32..]),
        "the secret is never shown"
    );
    let keys: Value = serde_json::from_str(&listing).expect("JSON");
    assert_eq!(keys.as_array().expect("keys").len(), 1);
    assert_eq!(keys[0]["prefix"], created["prefix"]);
    assert!(keys[0]["revoked_at"].is_string());
    let table = db.ok(&["key", "list", "--entity", &entity]);
    assert!(table.starts_with("ID\tPREFIX\tMODE\tTIER"));
    assert!(table.contains(created["prefix"].as_str().expect("prefix")));
}

#[test]
fn an_import_that_cannot_start_exits_2_and_says_why() {
    let dir = std::env::temp_dir().join(format!("arcusctl-import-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("products.csv");
    std::fs::write(&file, "external_id,title,product_type\nP-1,Mug,physical\n").expect("file");
    let entity = Uuid::new_v4().to_string();
    let import = |file: &std::path::Path, key: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_arcusctl"));
        command.args([
            "import",
            "--entity",
            &entity,
            "--resource",
            "products",
            "--source",
            "shopify",
            "--file",
        ]);
        command.arg(file).env_remove("ARCUS_API_KEY");
        if let Some(key) = key {
            command.env("ARCUS_API_KEY", key);
        }
        command.output().expect("runs")
    };
    let cases = [
        (import(&file, None), "ARCUS_API_KEY"),
        (import(&dir.join("missing.csv"), Some("k")), "missing.csv"),
        (import(&dir.join("products.xlsx"), Some("k")), "--format"),
    ];
    std::fs::remove_dir_all(&dir).expect("cleanup");
    for (out, says) in cases {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}
