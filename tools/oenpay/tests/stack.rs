//! `oenpay --stack NAME` run as a process against moto's CloudFormation: the stack's
//! `MerchantApiUrl` output — not another output, not another stack's — is where the commands go
//! (here the local dev stack), found at `AWS_ENDPOINT_URL_CLOUDFORMATION` before
//! `AWS_ENDPOINT_URL`, in the stack's region; a name CloudFormation does not know, a stack
//! without the output and an unreachable CloudFormation each end with what to do next.
//!
//! moto is the one `scripts/test` started (`AWS_ENDPOINT_URL`), else one this test process
//! starts from the project's `.venv` (or `PATH`) and that stops when this process exits. moto
//! picks the service and the region from the request's SigV4 scope, so a request signed for
//! another service or region would not find the stacks made here.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use oen_dev::{DevStack, Options};
use oenpay::sign::{signing_headers, Scope, CLOUDFORMATION};
use serde_json::{json, Map, Value};

/// Where the stacks are made, and where the CLI must look for them.
const REGION: &str = "ap-northeast-1";
/// The child's credentials: never printed, whatever happens.
const SECRET: &str = "oenpay-test-secret-key-never-shown";
const TOKEN: &str = "oenpay-test-session-token-never-shown";

// ---------------------------------------------------------------------------------------------
// moto, as the integration tests find it (tests/src/lib.rs)

/// The moto server this process started, if any: never dropped, so the lifeline's stdin closes
/// only when this process exits.
static MOTO: Mutex<Option<Child>> = Mutex::new(None);

fn moto() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim_end_matches('/').to_owned(),
        _ => start_moto(),
    })
}

fn moto_executable() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("moto_server"))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "moto_server is in neither .venv/bin nor PATH: run scripts/test (or scripts/venv)"
            )
        })
}

/// moto on a free loopback port, behind a shell that kills it when its stdin (a pipe only this
/// process holds) reaches end-of-file: when this process exits, however it exits.
fn start_moto() -> String {
    const LIFELINE: &str = r#"
        "$1" -H 127.0.0.1 -p "$2" >"$3" 2>&1 </dev/null &
        moto=$!
        while read -r _; do :; done
        kill "$moto" 2>/dev/null
        wait "$moto"
        rm -f "$3"
    "#;
    let moto = moto_executable();
    let port = free_port();
    let log = std::env::temp_dir().join(format!("oenpay-stack-moto-{port}.log"));
    let child = Command::new("sh")
        .args(["-c", LIFELINE, "moto-lifeline"])
        .arg(&moto)
        .arg(port.to_string())
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", moto.display()));
    *MOTO.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !answers(addr) {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "moto_server did not answer on {addr} within 30 s:\n{log}"
        );
        // Polling a process we do not control; the deadline bounds it.
        std::thread::sleep(Duration::from_millis(50));
    }
    format!("http://{addr}")
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A loopback URL nothing listens on.
fn nobody() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// A stack name no other test or run uses.
fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// CreateStack in moto (a queue, and these outputs in this order), as the AWS CLI would send it.
async fn create_stack(name: &str, outputs: &[(&str, &str)]) {
    let outputs: Map<String, Value> = outputs
        .iter()
        .map(|(key, value)| {
            let output = json!({"Description": format!("{key}: a test output"), "Value": value});
            ((*key).to_owned(), output)
        })
        .collect();
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
        "Outputs": outputs,
    });
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "CreateStack")
        .append_pair("StackName", name)
        .append_pair("TemplateBody", &template.to_string())
        .append_pair("Version", "2010-05-15")
        .finish();
    let url = format!("{}/", moto());
    let form = "application/x-www-form-urlencoded; charset=utf-8";
    let credentials = Credentials::new("testing", "testing", None, None, "test");
    let scope = Scope {
        region: REGION,
        service: CLOUDFORMATION,
    };
    let signed = signing_headers(
        &credentials,
        scope,
        "POST",
        &url,
        &[("content-type", form)],
        body.as_bytes(),
        SystemTime::now(),
    )
    .unwrap();
    let mut request = reqwest::Client::new()
        .post(&url)
        .header("content-type", form);
    for (name, value) in signed {
        request = request.header(name, value);
    }
    let answer = request.body(body).send().await.unwrap();
    let status = answer.status();
    let text = answer.text().await.unwrap();
    assert!(status.is_success(), "CreateStack {name}: {status}: {text}");
}

// ---------------------------------------------------------------------------------------------
// The CLI

/// `oenpay args…` with only the AWS settings in `env` (and test credentials): nothing from the
/// developer's own environment, profile or instance.
async fn oenpay(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oenpay"));
    command.args(args);
    for var in [
        "OENPAY_ENDPOINT",
        "OENPAY_STACK",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_CLOUDFORMATION",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    ] {
        command.env_remove(var);
    }
    let nowhere = std::env::temp_dir().join("oenpay-test-no-such-aws-config");
    command
        .env("AWS_CONFIG_FILE", &nowhere)
        .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .envs(env.iter().copied());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(
        !all.contains(SECRET) && !all.contains(TOKEN) && !all.contains("Signature="),
        "oenpay {args:?} printed credentials or a signature:\n{all}"
    );
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn dev_stack() -> DevStack {
    oen_dev::start(Options {
        port: 0,
        ..Options::default()
    })
    .await
    .expect("the dev stack starts on a free port")
}

#[tokio::test]
async fn the_stacks_merchant_api_url_is_where_the_commands_go() {
    let dev = dev_stack().await;
    let (wrong_output, wrong_stack) = (nobody(), nobody());
    let name = unique("oenpay-stack");
    create_stack(
        &name,
        &[
            ("ApiUrl", &wrong_output),
            ("MerchantApiUrlLegacy", &wrong_output),
            // As template.yaml's: the API's root and /v1.
            ("MerchantApiUrl", &format!("{}/v1", dev.url())),
            ("WebhookUrlToRegisterWithOen", &wrong_output),
        ],
    )
    .await;
    create_stack(&unique("oenpay-other"), &[("MerchantApiUrl", &wrong_stack)]).await;

    // CloudFormation at AWS_ENDPOINT_URL_CLOUDFORMATION; the general AWS_ENDPOINT_URL, which
    // the SDKs use only for services without their own, goes nowhere.
    let dead = nobody();
    let linked = oenpay(
        &[
            "--stack",
            &name,
            "--region",
            REGION,
            "--json",
            "link",
            "--customer",
            "mei",
            "--plan",
            "premium",
        ],
        &[
            ("AWS_ENDPOINT_URL_CLOUDFORMATION", moto()),
            ("AWS_ENDPOINT_URL", &dead),
        ],
    )
    .await;
    assert!(linked.status.success(), "{}", stderr(&linked));
    let link: Value = serde_json::from_str(&stdout(&linked)).unwrap();
    assert!(
        link["url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/checkout/start?", dev.url())),
        "the dev stack minted the link: {link}"
    );

    // OENPAY_STACK and the region of the environment; CloudFormation at AWS_ENDPOINT_URL.
    let looked = oenpay(
        &["charge-due", "--dry-run"],
        &[
            ("OENPAY_STACK", &name),
            ("AWS_REGION", REGION),
            ("AWS_ENDPOINT_URL", moto()),
        ],
    )
    .await;
    assert!(looked.status.success(), "{}", stderr(&looked));
    assert!(
        stdout(&looked).contains("Nothing is due"),
        "{}",
        stdout(&looked)
    );

    // The stack is looked for in the region given, and nowhere else.
    let elsewhere = oenpay(
        &["--stack", &name, "charge-due", "--dry-run"],
        &[
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", moto()),
        ],
    )
    .await;
    assert_eq!(elsewhere.status.code(), Some(1), "{}", stderr(&elsewhere));
    assert!(
        stderr(&elsewhere).contains(&format!("no stack named \"{name}\" in eu-west-1")),
        "{}",
        stderr(&elsewhere)
    );
}

#[tokio::test]
async fn an_unknown_stack_says_so_and_what_to_do() {
    let name = unique("oenpay-typo");
    let out = oenpay(
        &["--stack", &name, "customers", "show", "mei"],
        &[("AWS_REGION", REGION), ("AWS_ENDPOINT_URL", moto())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "oenpay: no stack named \"{name}\" in {REGION} (CloudFormation: Stack with id \
             {name} does not exist)"
        )),
        "{err}"
    );
    assert!(
        err.contains("aws cloudformation list-stacks") && err.contains("--region"),
        "{err}"
    );
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[tokio::test]
async fn a_stack_without_the_merchant_api_output_names_its_status_and_outputs() {
    let name = unique("oenpay-older");
    create_stack(&name, &[("ApiUrl", &nobody()), ("TableName", "oen-pay")]).await;
    let out = oenpay(
        &["--stack", &name, "customers", "show", "mei"],
        &[("AWS_REGION", REGION), ("AWS_ENDPOINT_URL", moto())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "stack \"{name}\" (CREATE_COMPLETE) has no MerchantApiUrl output; its outputs are"
        )) && err.contains("ApiUrl")
            && err.contains("TableName"),
        "{err}"
    );
    assert!(err.contains("older template.yaml"), "{err}");
}

#[tokio::test]
async fn an_unreachable_cloudformation_is_named_and_nothing_else_is_sent() {
    let dead = nobody();
    let out = oenpay(
        &[
            "--stack",
            "oen-pay",
            "--region",
            REGION,
            "customers",
            "show",
            "mei",
        ],
        &[
            ("AWS_ENDPOINT_URL_CLOUDFORMATION", &dead),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("cannot reach CloudFormation at {dead}/")),
        "{err}"
    );
    assert!(err.contains("AWS_ENDPOINT_URL_CLOUDFORMATION"), "{err}");
}

#[tokio::test]
async fn stack_and_endpoint_exclude_each_other_and_the_stack_needs_a_region() {
    let both = oenpay(
        &[
            "--stack",
            "oen-pay",
            "--endpoint",
            "http://127.0.0.1:8080",
            "customers",
            "show",
            "mei",
        ],
        &[("AWS_REGION", REGION)],
    )
    .await;
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    assert!(
        stderr(&both).contains("--stack") && stderr(&both).contains("--endpoint"),
        "{}",
        stderr(&both)
    );

    let from_env = oenpay(
        &["--stack", "oen-pay", "customers", "show", "mei"],
        &[
            ("OENPAY_ENDPOINT", "http://127.0.0.1:8080"),
            ("AWS_REGION", REGION),
        ],
    )
    .await;
    assert_eq!(from_env.status.code(), Some(2), "{}", stderr(&from_env));
    assert!(
        stderr(&from_env).contains("--stack and OENPAY_ENDPOINT (set in the environment)"),
        "{}",
        stderr(&from_env)
    );

    let cleared = oenpay(
        &["customers", "show", "mei"],
        &[("OENPAY_STACK", ""), ("AWS_REGION", REGION)],
    )
    .await;
    assert_eq!(cleared.status.code(), Some(2), "{}", stderr(&cleared));
    assert!(
        stderr(&cleared).contains("no endpoint: pass --stack NAME"),
        "an empty OENPAY_STACK is no stack: {}",
        stderr(&cleared)
    );

    let no_region = oenpay(
        &["--stack", "oen-pay", "customers", "show", "mei"],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    )
    .await;
    assert_eq!(no_region.status.code(), Some(2), "{}", stderr(&no_region));
    assert!(
        stderr(&no_region).contains("pass --region"),
        "{}",
        stderr(&no_region)
    );
}
