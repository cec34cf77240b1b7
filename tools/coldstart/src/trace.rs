//! What a function's init does to the system, from one extra run under
//! `strace -f -e trace=connect,open,openat`: every `connect` (any address family) and every file
//! opened before its first connection to the Runtime API (the first `next`).

use std::collections::BTreeMap;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct InitTrace {
    /// Destinations of `connect` before the first `next`, in order (`127.0.0.1:5000`, a Unix
    /// socket's path).
    pub connects: Vec<String>,
    /// Files opened (or tried) before the first `next`.
    pub opens: usize,
    /// Of those, how many per directory.
    pub open_dirs: BTreeMap<String, usize>,
    /// Whether the connection to the Runtime API was found at all.
    pub reached_runtime_api: bool,
}

/// Reads strace's output (`-f -o`: lines `PID syscall(...) = result`).
pub fn init_trace(strace_output: &str, runtime_api: &str) -> InitTrace {
    let mut trace = InitTrace::default();
    for line in strace_output.lines() {
        if let Some(destination) = connect_destination(line) {
            if destination == runtime_api {
                trace.reached_runtime_api = true;
                break;
            }
            trace.connects.push(destination);
        } else if let Some(path) = opened_path(line) {
            trace.opens += 1;
            let dir = match path.rsplit_once('/') {
                Some(("", _)) => "/".to_owned(),
                Some((dir, _)) => dir.to_owned(),
                None => ".".to_owned(),
            };
            *trace.open_dirs.entry(dir).or_default() += 1;
        }
    }
    trace
}

fn syscall_args<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    // `1234 connect(...)`, or `connect(...)` without -f.
    let rest = line.trim_start();
    let rest = rest
        .split_once(' ')
        .filter(|(pid, _)| pid.chars().all(|c| c.is_ascii_digit()))
        .map_or(rest, |(_, rest)| rest.trim_start());
    rest.strip_prefix(name)?.strip_prefix('(')
}

fn quoted_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    let start = text.find(marker)? + marker.len();
    let rest = text[start..].strip_prefix('"')?;
    rest.split('"').next()
}

fn number_after(text: &str, marker: &str) -> Option<u16> {
    let start = text.find(marker)? + marker.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn connect_destination(line: &str) -> Option<String> {
    let args = syscall_args(line, "connect")?;
    if args.contains("sa_family=AF_UNIX") {
        return Some(format!(
            "unix:{}",
            quoted_after(args, "sun_path=").unwrap_or("?")
        ));
    }
    if args.contains("sa_family=AF_INET6") {
        let port = number_after(args, "sin6_port=htons(")?;
        let addr = args
            .find("inet_pton(AF_INET6, ")
            .and_then(|i| quoted_after(&args[i..], "inet_pton(AF_INET6, "))
            .unwrap_or("?");
        return Some(format!("[{addr}]:{port}"));
    }
    if args.contains("sa_family=AF_INET") {
        let port = number_after(args, "sin_port=htons(")?;
        let addr = quoted_after(args, "sin_addr=inet_addr(").unwrap_or("?");
        return Some(format!("{addr}:{port}"));
    }
    let family = args
        .split_once("sa_family=")
        .map(|(_, r)| r.split([',', '}']).next().unwrap_or("?"))
        .unwrap_or("?");
    Some(family.to_owned())
}

fn opened_path(line: &str) -> Option<&str> {
    let args = syscall_args(line, "openat").or_else(|| syscall_args(line, "open"))?;
    let start = args.find('"')? + 1;
    args[start..].split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = r#"101 openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3
101 openat(AT_FDCWD, "/etc/ssl/certs/ca-certificates.crt", O_RDONLY|O_CLOEXEC) = 9
102 openat(AT_FDCWD, "/etc/ssl/certs/a.pem", O_RDONLY|O_CLOEXEC) = 9
102 connect(9, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT (No such file or directory)
102 connect(9, {sa_family=AF_INET, sin_port=htons(5001), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)
102 connect(10, {sa_family=AF_INET6, sin6_port=htons(443), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28 <unfinished ...>
101 connect(11, {sa_family=AF_INET, sin_port=htons(9001), sin_addr=inet_addr("127.0.0.1")}, 16) = -1 EINPROGRESS (Operation now in progress)
101 openat(AT_FDCWD, "/late", O_RDONLY) = 3
"#;

    #[test]
    fn counts_what_happens_before_the_first_next() {
        let trace = init_trace(OUTPUT, "127.0.0.1:9001");
        assert!(trace.reached_runtime_api);
        assert_eq!(
            trace.connects,
            vec!["unix:/var/run/nscd/socket", "127.0.0.1:5001", "[::1]:443"]
        );
        assert_eq!(trace.opens, 3);
        assert_eq!(trace.open_dirs["/etc/ssl/certs"], 2);
        assert_eq!(trace.open_dirs["/etc"], 1);
    }
}
