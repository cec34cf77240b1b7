//! Cold starts of the functions' release bootstraps, next to a hello-world `lambda_http`
//! function built with the same profile:
//!
//! ```text
//! cargo run --release -p oen-pay-coldstart -- --runs 15
//! ```
//!
//! Each cold start spawns a bootstrap against a fake Lambda Runtime API on loopback, with the
//! function's environment as `template.yaml` deploys it and `AWS_ENDPOINT_URL` at moto (behind a
//! counting proxy). It measures init (spawn to the first `GET /runtime/invocation/next`), serves
//! one real invocation, reads the peak RSS (`VmHWM`) and kills the process. The functions run
//! interleaved; the figures are printed, nothing is asserted. See `--help`.

mod aws;
mod proxy;
mod runtime_api;
mod template;
mod trace;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws::{Moto, Resources, REGION};
use proxy::{Proxy, Traffic};
use runtime_api::{Invocation, RuntimeApi, Seen};
use template::Template;

const USAGE: &str = "\
usage: cargo run --release -p oen-pay-coldstart -- [options]

  --runs N              measured cold starts per function (default 15), interleaved
  --warmup N            unmeasured rounds first (default 1: page cache, moto's first answers)
  --only a,b            only these functions (hello, checkout-start, webhook, charger,
                        merchant-api)
  --bootstrap NAME=PATH use this bootstrap for NAME (repeatable); with all of them, nothing is built
  --no-build            use target/release/{checkout-start,webhook,charger,merchant-api,hello}
                        as they are
  --no-strace           skip the extra run per function under strace (connects, files at init)
  --env KEY=VALUE       add to every function's environment (repeatable; experiments such as
                        SSL_CERT_FILE=...)

Without --no-build (or all five --bootstrap), it first runs
  cargo build --release -p checkout-start -p webhook -p charger -p merchant-api \\
      -p oen-pay-coldstart --bin checkout-start --bin webhook --bin charger \\
      --bin merchant-api --bin hello
AWS is moto: AWS_ENDPOINT_URL when set, else a moto_server from .venv (scripts/test makes it).";

/// The functions, in their round-robin order; `hello` is the baseline.
const FUNCTIONS: &[&str] = &[
    "hello",
    "checkout-start",
    "webhook",
    "charger",
    "merchant-api",
];

/// One invocation per function: a cheap real code path of each.
fn event(name: &str) -> &'static str {
    match name {
        // A binding's status: one DynamoDB read (404, no such binding).
        "checkout-start" => include_str!("../../../events/checkout-status.json"),
        // A failed token webhook: the secret (path key), then the session lookup.
        "webhook" => include_str!("../../../events/webhook-token-failure.json"),
        // Plan what is due now: DynamoDB queries, SQS, the outbox relay.
        "charger" => include_str!("../../../events/charger-now.json"),
        // A signed refund of an order with no period: the IAM check, one DynamoDB read (404).
        "merchant-api" => include_str!("../../../events/merchant-api-refund.json"),
        // Any API Gateway v2 event.
        _ => include_str!("../../../events/checkout-status.json"),
    }
}

struct Args {
    runs: usize,
    warmup: usize,
    only: Option<Vec<String>>,
    bootstraps: BTreeMap<String, PathBuf>,
    build: bool,
    strace: bool,
    env: Vec<(String, String)>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        runs: 15,
        warmup: 1,
        only: None,
        bootstraps: BTreeMap::new(),
        build: true,
        strace: true,
        env: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--runs" => {
                args.runs = value("--runs")?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--warmup" => {
                args.warmup = value("--warmup")?
                    .parse()
                    .map_err(|_| "--warmup needs a number")?;
            }
            "--only" => {
                let names: Vec<String> = value("--only")?.split(',').map(str::to_owned).collect();
                if let Some(bad) = names.iter().find(|n| !FUNCTIONS.contains(&n.as_str())) {
                    return Err(format!("--only: unknown function {bad}"));
                }
                args.only = Some(names);
            }
            "--bootstrap" => {
                let spec = value("--bootstrap")?;
                let (name, path) = spec.split_once('=').ok_or("--bootstrap needs NAME=PATH")?;
                if !FUNCTIONS.contains(&name) {
                    return Err(format!("--bootstrap: unknown function {name}"));
                }
                args.bootstraps.insert(name.to_owned(), PathBuf::from(path));
            }
            "--env" => {
                let spec = value("--env")?;
                let (key, value) = spec.split_once('=').ok_or("--env needs KEY=VALUE")?;
                args.env.push((key.to_owned(), value.to_owned()));
            }
            "--no-build" => args.build = false,
            "--no-strace" => args.strace = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}\n\n{USAGE}")),
        }
    }
    if args.bootstraps.len() == FUNCTIONS.len() {
        args.build = false;
    }
    Ok(args)
}

fn main() {
    if let Err(e) = run() {
        eprintln!("coldstart: {e}");
        std::process::exit(1);
    }
}

fn repo_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors().nth(2).unwrap_or(here).to_path_buf()
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let repo = repo_root();
    let names: Vec<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|n| args.only.as_ref().is_none_or(|o| o.iter().any(|x| x == n)))
        .collect();

    let mut paths = if args.build {
        build(&repo)?
    } else {
        release_paths(&repo)
    };
    paths.extend(args.bootstraps.clone());
    for name in &names {
        let path = paths
            .get(*name)
            .ok_or_else(|| format!("no bootstrap for {name}"))?;
        if !path.is_file() {
            return Err(format!("{name}: {} does not exist", path.display()));
        }
    }

    let template = Template::read(&repo)?;
    eprintln!("coldstart: starting moto and creating the table, key, secret, queue and bus");
    let moto = Moto::start_or_reuse(&repo)?;
    let resources = moto.create_resources(&template)?;
    let work = std::env::temp_dir().join(format!("oen-pay-coldstart-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    let outcome = runtime.block_on(async {
        let proxy = Proxy::start(moto.endpoint)
            .await
            .map_err(|e| format!("proxy: {e}"))?;
        let functions = names
            .iter()
            .map(|name| {
                let mut f = Function::new(name, &paths[*name], &template, &resources, &proxy)?;
                f.env.extend(args.env.iter().cloned());
                Ok(f)
            })
            .collect::<Result<Vec<_>, String>>()?;
        bench(&args, &functions, &proxy, &work).await
    });
    match &outcome {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&work);
        }
        Err(_) => eprintln!("coldstart: the functions' output is in {}", work.display()),
    }
    outcome
}

/// A function under test: its bootstrap, environment and event.
struct Function {
    name: &'static str,
    path: PathBuf,
    env: BTreeMap<String, String>,
    timeout: Duration,
    event: &'static str,
}

impl Function {
    fn new(
        name: &str,
        path: &Path,
        template: &Template,
        resources: &Resources,
        proxy: &Proxy,
    ) -> Result<Self, String> {
        let name = FUNCTIONS
            .iter()
            .copied()
            .find(|n| *n == name)
            .ok_or_else(|| format!("unknown function {name}"))?;
        // What Lambda sets for a provided.al2023 function (no HOME), dummy credentials.
        let mut env: BTreeMap<String, String> = [
            ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin"),
            ("LANG", "en_US.UTF-8"),
            ("TZ", ":UTC"),
            ("_HANDLER", "bootstrap"),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]0123456789abcdef",
            ),
            // The template's LoggingConfig (JSON, application level INFO by default).
            ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
            ("AWS_LAMBDA_LOG_LEVEL", "INFO"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let function_name = format!("oen-pay-{name}");
        let (timeout_s, memory_mb) = if name == "hello" {
            (30, 256)
        } else {
            let deployed = template.function(name, resources)?;
            env.extend(deployed.env);
            (deployed.timeout_s, deployed.memory_mb)
        };
        env.insert("AWS_ENDPOINT_URL".into(), format!("http://{}", proxy.addr));
        env.insert("AWS_LAMBDA_FUNCTION_NAME".into(), function_name.clone());
        env.insert(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(),
            memory_mb.to_string(),
        );
        env.insert("AWS_LAMBDA_FUNCTION_TIMEOUT".into(), timeout_s.to_string());
        env.insert(
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{function_name}"),
        );
        Ok(Self {
            name,
            path: path.to_path_buf(),
            env,
            timeout: Duration::from_secs(timeout_s),
            event: event(name),
        })
    }

    fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{REGION}:123456789012:function:{}",
            self.env["AWS_LAMBDA_FUNCTION_NAME"]
        )
    }
}

/// One measured cold start.
#[derive(Debug, Clone)]
struct Sample {
    init: Duration,
    invoke: Duration,
    peak_rss_kb: u64,
    aws_connections: usize,
    aws_requests: Vec<String>,
    /// Requests to the AWS endpoint while the invocation ran.
    invoke_requests: Vec<String>,
    answer: String,
    /// The fake Runtime API's address, as the function was given it.
    runtime_api: String,
}

async fn bench(
    args: &Args,
    functions: &[Function],
    proxy: &Proxy,
    work: &Path,
) -> Result<(), String> {
    print_sizes(functions, work)?;
    let total = args.warmup + args.runs;
    let mut samples: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    eprintln!(
        "coldstart: {} warm-up and {} measured rounds of {} functions",
        args.warmup,
        args.runs,
        functions.len()
    );
    for round in 0..total {
        // Round-robin, each round starting one further along.
        for i in 0..functions.len() {
            let f = &functions[(round + i) % functions.len()];
            let sample = cold_start(f, proxy, round, work, None).await?;
            if round >= args.warmup {
                samples.entry(f.name).or_default().push(sample);
            }
        }
        eprint!("\rcoldstart: round {}/{total}", round + 1);
    }
    eprintln!();
    print_table(args.runs, functions, &samples);

    if args.strace {
        match which("strace") {
            Some(strace) => {
                println!();
                println!("At init, one more run each under strace -f (connects and files opened before the first /next):");
                for f in functions {
                    let log = work.join(format!("{}.strace", f.name));
                    let sample = cold_start(f, proxy, total, work, Some((&strace, &log))).await?;
                    let text = std::fs::read_to_string(&log)
                        .map_err(|e| format!("{}: {e}", log.display()))?;
                    print_trace(f.name, &sample, &proxy.addr.to_string(), &text);
                }
            }
            None => println!("\n(strace not found: no connect/file trace of init)"),
        }
    }
    Ok(())
}

fn runtime_api_env(api: &RuntimeApi) -> String {
    format!("127.0.0.1:{}", api.addr.port())
}

/// Spawns `f` against a fresh fake Runtime API, serves it one invocation and kills it.
async fn cold_start(
    f: &Function,
    proxy: &Proxy,
    round: usize,
    work: &Path,
    strace: Option<(&Path, &Path)>,
) -> Result<Sample, String> {
    let request_id = format!("c01d5a27-0000-4000-8000-{round:012}");
    let mut api = RuntimeApi::start(Invocation {
        request_id,
        function_arn: f.arn(),
        timeout: f.timeout,
        event: f.event.as_bytes().to_vec(),
    })
    .await
    .map_err(|e| format!("runtime API: {e}"))?;
    let log_path = work.join(format!("{}.log", f.name));
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = match strace {
        Some((strace, out)) => {
            let mut c = Command::new(strace);
            c.args(["-f", "-qq", "-e", "trace=connect,open,openat", "-o"])
                .arg(out)
                .arg("--")
                .arg(&f.path);
            c
        }
        None => Command::new(&f.path),
    };
    command
        .env_clear()
        .envs(&f.env)
        .env("AWS_LAMBDA_RUNTIME_API", runtime_api_env(&api))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);

    let spawned = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|e| format!("{}: cannot start {}: {e}", f.name, f.path.display()))?;
    let result = serve(f, &mut api, &mut child, spawned, proxy, strace.is_some()).await;
    let _ = child.kill();
    let _ = child.wait();
    api.stop().await;
    result.map_err(|e| format!("{}: {e}; its output: {}", f.name, log_path.display()))
}

async fn serve(
    f: &Function,
    api: &mut RuntimeApi,
    child: &mut Child,
    spawned: Instant,
    proxy: &Proxy,
    traced: bool,
) -> Result<Sample, String> {
    let next_at = match wait(api, child, Duration::from_secs(30)).await? {
        Seen::Next(at) => at,
        Seen::InitError { body } => {
            return Err(format!("init error: {}", String::from_utf8_lossy(&body)))
        }
        other => return Err(format!("before the first next: {other:?}")),
    };
    let init_traffic = proxy.between(spawned, next_at);
    let (answered_at, answer) = match wait(api, child, f.timeout + Duration::from_secs(5)).await? {
        Seen::Response { at, body } => (at, summarize_answer(&body)),
        Seen::Error { at, body } => (
            at,
            format!("invocation error {}", String::from_utf8_lossy(&body)),
        ),
        other => return Err(format!("instead of a response: {other:?}")),
    };
    // The bootstrap: the child itself, or strace's child.
    let pid = if traced {
        child_of(child.id()).ok_or("the traced bootstrap is gone")?
    } else {
        child.id()
    };
    let invoke_requests = requests(proxy.between(next_at, answered_at));
    let peak_rss_kb = peak_rss_kb(pid).ok_or("no VmHWM in /proc/PID/status")?;
    if traced {
        // Killing strace would leave its tracee running.
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    Ok(Sample {
        init: next_at - spawned,
        invoke: answered_at - next_at,
        peak_rss_kb,
        aws_connections: init_traffic
            .iter()
            .filter(|t| matches!(t, Traffic::Connection(_)))
            .count(),
        aws_requests: requests(init_traffic),
        invoke_requests,
        answer,
        runtime_api: runtime_api_env(api),
    })
}

fn requests(traffic: Vec<Traffic>) -> Vec<String> {
    traffic
        .into_iter()
        .filter_map(|t| match t {
            Traffic::Request(_, summary) => Some(summary),
            Traffic::Connection(_) => None,
        })
        .collect()
}

/// The next thing the function does, while it lives, within `limit`.
async fn wait(api: &mut RuntimeApi, child: &mut Child, limit: Duration) -> Result<Seen, String> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        tokio::select! {
            seen = api.seen.recv() => return seen.ok_or_else(|| "the runtime API stopped".to_owned()),
            _ = tokio::time::sleep(Duration::from_millis(5)) => {
                if let Ok(Some(status)) = child.try_wait() {
                    // What it reported just before exiting still counts.
                    return match api.seen.try_recv() {
                        Ok(seen) => Ok(seen),
                        Err(_) => Err(format!("exited with {status}")),
                    };
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("nothing within {limit:?}"));
                }
            }
        }
    }
}

/// `HTTP 404` for an API Gateway answer, else the start of the JSON.
fn summarize_answer(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    if let Some(status) = value.get("statusCode").and_then(|s| s.as_u64()) {
        let text = value
            .get("body")
            .and_then(|b| b.as_str())
            .unwrap_or_default();
        return format!("HTTP {status} {}", shorten(text, 60));
    }
    shorten(&String::from_utf8_lossy(body), 70)
}

fn shorten(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

fn peak_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// A child process of `parent` (strace's tracee).
fn child_of(parent: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
            let after = stat.rsplit_once(')')?.1;
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

// ---------------------------------------------------------------------------------------------
// Building

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn target_dir(repo: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
}

fn release_paths(repo: &Path) -> BTreeMap<String, PathBuf> {
    let release = target_dir(repo).join("release");
    FUNCTIONS
        .iter()
        .map(|n| (n.to_string(), release.join(n)))
        .collect()
}

/// Builds the four bootstraps in one release build; their paths from cargo's own messages.
fn build(repo: &Path) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut command = Command::new(cargo());
    command.current_dir(repo).args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ]);
    for package in [
        "checkout-start",
        "webhook",
        "charger",
        "merchant-api",
        "oen-pay-coldstart",
    ] {
        command.args(["-p", package]);
    }
    for bin in [
        "checkout-start",
        "webhook",
        "charger",
        "merchant-api",
        "hello",
    ] {
        command.args(["--bin", bin]);
    }
    eprintln!("coldstart: cargo build --release (the four functions and hello)");
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo build failed ({})", output.status));
    }
    let mut paths = BTreeMap::new();
    for line in output.stdout.lines() {
        let Ok(line) = line else { continue };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let name = message.pointer("/target/name").and_then(|n| n.as_str());
        let exe = message.get("executable").and_then(|e| e.as_str());
        if let (Some(name), Some(exe)) = (name, exe) {
            if FUNCTIONS.contains(&name) {
                paths.insert(name.to_owned(), PathBuf::from(exe));
            }
        }
    }
    Ok(paths)
}

// ---------------------------------------------------------------------------------------------
// Reporting

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// The size of `bootstrap` zipped alone with deflate, as Lambda receives it.
fn zipped_size(path: &Path, work: &Path, name: &str) -> Result<u64, String> {
    let dir = work.join(format!("zip-{name}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let bootstrap = dir.join("bootstrap");
    std::fs::copy(path, &bootstrap).map_err(|e| format!("{}: {e}", path.display()))?;
    let zip = dir.join("bootstrap.zip");
    let zipped = Command::new("zip")
        .current_dir(&dir)
        .args(["-q", "-X", "bootstrap.zip", "bootstrap"])
        .status()
        .is_ok_and(|s| s.success());
    if !zipped {
        let script = "import sys, zipfile\n\
             with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n    \
             z.write(sys.argv[2], 'bootstrap')";
        let ok = Command::new("python3")
            .args(["-c", script])
            .arg(&zip)
            .arg(&bootstrap)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("neither zip nor python3 could zip the bootstrap".into());
        }
    }
    let size = std::fs::metadata(&zip).map_err(|e| e.to_string())?.len();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(size)
}

fn print_sizes(functions: &[Function], work: &Path) -> Result<(), String> {
    println!("Bootstraps (release profile):");
    println!("  {:<15} {:>10} {:>12}", "function", "size MB", "zipped MB");
    for f in functions {
        let size = std::fs::metadata(&f.path)
            .map_err(|e| format!("{}: {e}", f.path.display()))?
            .len();
        let zipped = zipped_size(&f.path, work, f.name)?;
        println!(
            "  {:<15} {:>10.2} {:>12.2}   {}",
            f.name,
            mb(size),
            mb(zipped),
            f.path.display()
        );
    }
    println!();
    Ok(())
}

/// The median (the mean of the middle two of an even count), min and max.
fn stats(mut values: Vec<f64>) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let median = if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    };
    (median, values[0], values[n - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print_table(runs: usize, functions: &[Function], samples: &BTreeMap<&str, Vec<Sample>>) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "Cold starts: {runs} interleaved runs each; medians [min–max] (load average {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "  {:<15} {:>22} {:>7} {:>22} {:>10} {:>14}",
        "function", "init ms", "×hello", "peak RSS MB", "invoke ms", "AWS conn/req"
    );
    let hello_init = samples
        .get("hello")
        .map(|s| stats(s.iter().map(|x| ms(x.init)).collect()).0);
    for f in functions {
        let Some(s) = samples.get(f.name) else {
            continue;
        };
        let init = stats(s.iter().map(|x| ms(x.init)).collect());
        let rss = stats(s.iter().map(|x| x.peak_rss_kb as f64 / 1000.0).collect());
        let invoke = stats(s.iter().map(|x| ms(x.invoke)).collect());
        let conns = stats(s.iter().map(|x| x.aws_connections as f64).collect());
        let reqs = stats(s.iter().map(|x| x.aws_requests.len() as f64).collect());
        let ratio = hello_init
            .map(|h| format!("{:.2}", init.0 / h))
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<15} {:>7.1} [{:>5.1}–{:>5.1}] {:>7} {:>7.1} [{:>5.1}–{:>5.1}] {:>10.1} {:>9}/{}",
            f.name,
            init.0,
            init.1,
            init.2,
            ratio,
            rss.0,
            rss.1,
            rss.2,
            invoke.0,
            format!("{}", conns.2),
            reqs.2
        );
    }
    println!(
        "  init: spawn to the first GET /runtime/invocation/next; invoke: that next to the response;"
    );
    println!(
        "  peak RSS: VmHWM after the invocation; AWS conn/req: the most TCP connections/requests to the"
    );
    println!("  AWS endpoint (moto, through a counting proxy) before the first next, in any run.");
    println!("The invocations:");
    for f in functions {
        if let Some(first) = samples.get(f.name).and_then(|s| s.first()) {
            println!("  {:<15} {}", f.name, first.answer);
            let during = counted(
                first
                    .invoke_requests
                    .iter()
                    .map(|r| r.rsplit(' ').next().unwrap_or(r)),
            );
            if !during.is_empty() {
                println!("  {:<15} AWS requests: {during}", "");
            }
            // At init, over all runs.
            let at_init = counted(
                samples[f.name]
                    .iter()
                    .flat_map(|s| s.aws_requests.iter().map(String::as_str)),
            );
            if !at_init.is_empty() {
                println!("  {:<15} AWS requests at init (all runs): {at_init}", "");
            }
        }
    }
}

/// `a ×2, b` in the order of first appearance.
fn counted<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for item in items {
        match counts.iter_mut().find(|(i, _)| *i == item) {
            Some((_, n)) => *n += 1,
            None => counts.push((item, 1)),
        }
    }
    counts
        .iter()
        .map(|(i, n)| {
            if *n == 1 {
                (*i).to_owned()
            } else {
                format!("{i} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_trace(name: &str, sample: &Sample, aws: &str, strace_output: &str) {
    let t = trace::init_trace(strace_output, &sample.runtime_api);
    if !t.reached_runtime_api {
        println!("  {name:<15} (no connection to the Runtime API in the trace)");
        return;
    }
    let mut connects: BTreeMap<String, usize> = BTreeMap::new();
    for c in t.connects {
        let label = if c == aws {
            format!("AWS endpoint {c}")
        } else {
            c
        };
        *connects.entry(label).or_default() += 1;
    }
    let connects = if connects.is_empty() {
        "none".to_owned()
    } else {
        connects
            .iter()
            .map(|(c, n)| format!("{c} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut dirs: Vec<(&String, &usize)> = t.open_dirs.iter().collect();
    dirs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let top = dirs
        .iter()
        .take(4)
        .map(|(d, n)| format!("{d} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    println!("  {name:<15} connects: {connects}");
    println!("  {:<15} files opened: {} ({top})", "", t.opens);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_min_and_max() {
        assert_eq!(stats(vec![3.0, 1.0, 2.0]), (2.0, 1.0, 3.0));
        assert_eq!(stats(vec![4.0, 1.0, 2.0, 3.0]), (2.5, 1.0, 4.0));
    }

    #[test]
    fn an_http_answer_is_summarized_by_its_status() {
        let body = br#"{"statusCode":404,"headers":{},"body":"{\"error\":\"no such binding\"}"}"#;
        assert_eq!(
            summarize_answer(body),
            r#"HTTP 404 {"error":"no such binding"}"#
        );
        assert_eq!(
            summarize_answer(br#"{"plannedShards":16}"#),
            r#"{"plannedShards":16}"#
        );
    }

    #[test]
    fn requests_are_counted_in_order() {
        assert_eq!(counted(["b", "a", "b"].into_iter()), "b ×2, a");
        assert_eq!(counted(std::iter::empty()), "");
    }

    #[test]
    fn every_function_has_an_event_that_is_json() {
        for name in FUNCTIONS {
            serde_json::from_str::<serde_json::Value>(event(name)).unwrap();
        }
    }

    #[test]
    fn the_webhook_event_carries_the_secret_path_key() {
        let secret: serde_json::Value = serde_json::from_str(aws::SECRET_JSON).unwrap();
        let key = secret["webhookPathKey"].as_str().unwrap();
        assert!(event("webhook").contains(&format!("/oen/webhook/{key}")));
    }
}
