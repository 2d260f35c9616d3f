//! What a process's cgroup path says about its workload: a container, a
//! systemd service, or nothing (rules 1 and 2 of the crate documentation).

/// The identity a cgroup gives, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupIdentity {
    /// `id` is the full 64-hex container id (lowercase); `pod_uid` the dashed
    /// Kubernetes pod uid, or empty.
    Container { id: String, pod_uid: String },
    /// A systemd service, by unit name without `.service`, unescaped.
    Service(String),
    /// The cgroup names no workload (root, sessions, slices, ...).
    None,
}

/// Runtimes that name a container's scope `<runtime>-<id>.scope` (systemd
/// cgroup driver) or `<runtime>-<id>` (podman with cgroupfs).
const RUNTIME_PREFIXES: [&str; 6] = ["docker", "cri-containerd", "containerd", "crio", "libpod", "nerdctl"];

/// Parses a cgroup as `ProcFs::cgroup` gives it: the v2 path, or the v1
/// lines (`N:controllers:/path`) joined with `;`.
pub fn parse_cgroup(cgroup: &str) -> CgroupIdentity {
    let paths: Vec<&str> = cgroup.split(';').map(path_of_line).collect();
    // A container id on any hierarchy beats a service: docker and containerd
    // shims also sit under services on some hierarchies.
    for path in &paths {
        if let Some(found) = container_in(path) {
            return found;
        }
    }
    paths.iter().find_map(|p| service_in(p)).map_or(CgroupIdentity::None, CgroupIdentity::Service)
}

/// The path of a `/proc/PID/cgroup` line (`0::/x`, `4:memory:/x`), or the
/// text itself when it already is a path.
fn path_of_line(line: &str) -> &str {
    let line = line.trim();
    if line.starts_with('/') {
        return line;
    }
    let mut parts = line.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(_controllers), Some(path)) if id.bytes().all(|b| b.is_ascii_digit()) => path,
        _ => line,
    }
}

fn segments(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The innermost container id in `path`, with the pod uid around it.
fn container_in(path: &str) -> Option<CgroupIdentity> {
    let id = segments(path).rev().find_map(container_id_of)?;
    let pod_uid = segments(path).rev().find_map(pod_uid_of).unwrap_or_default();
    Some(CgroupIdentity::Container { id, pod_uid })
}

/// `<64 hex>`, or `<runtime>-<64 hex>`, optionally with `.scope`.
fn container_id_of(segment: &str) -> Option<String> {
    let unit = segment.strip_suffix(".scope").unwrap_or(segment);
    if is_hex(unit, 64) {
        return Some(unit.to_ascii_lowercase());
    }
    let (runtime, id) = unit.rsplit_once('-')?;
    // `crio-conmon-<id>`: the monitor has a runtime-prefixed scope too.
    (RUNTIME_PREFIXES.contains(&runtime) && is_hex(id, 64)).then(|| id.to_ascii_lowercase())
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid>.slice` (systemd, with
/// `_` for `-`). Static pods have a 32-hex uid (a manifest hash).
fn pod_uid_of(segment: &str) -> Option<String> {
    let unit = segment.strip_suffix(".slice").unwrap_or(segment);
    let uid = match unit.rsplit_once("-pod") {
        Some((_, uid)) => uid,
        None => unit.strip_prefix("pod")?,
    };
    let uid = uid.replace('_', "-");
    (is_uuid(&uid) || is_hex(&uid, 32)).then(|| uid.to_ascii_lowercase())
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// 8-4-4-4-12 hex digits.
fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5 && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| is_hex(g, n))
}

/// The first `.service` segment that names a workload.
fn service_in(path: &str) -> Option<String> {
    segments(path).filter_map(|s| s.strip_suffix(".service")).find_map(service_name)
}

fn service_name(unit: &str) -> Option<String> {
    let unit = unescape(unit);
    if unit.is_empty() || unit.starts_with("user@") || is_transient(&unit) {
        return None;
    }
    match unit.split_once('@') {
        Some((template, instance)) if is_per_connection(instance) => Some(template.to_string()),
        _ => Some(unit),
    }
}

/// `systemd-run` units without `--unit`: `run-u123`, `run-r1a2b...`,
/// `run-p4242-i4243`. Their names are counters, a new one every run.
fn is_transient(unit: &str) -> bool {
    let Some(rest) = unit.strip_prefix("run-") else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(n) = rest.strip_prefix('u') {
        return digits(n);
    }
    if let Some(h) = rest.strip_prefix('r') {
        return !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit());
    }
    match rest.strip_prefix('p').and_then(|r| r.split_once("-i")) {
        Some((pid, inv)) => digits(pid) && digits(inv),
        None => false,
    }
}

/// Socket activation with `Accept=yes` names instances `<n>-<local>-<peer>`:
/// addresses with `:` (inet) or `<n>-<pid>-<uid>` (unix).
fn is_per_connection(instance: &str) -> bool {
    if !instance.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    instance.contains(':')
        || (instance.matches('-').count() >= 2 && instance.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
}

/// Undoes systemd's unit-name escaping (`\x2d` is `-`, any `\xNN` a byte).
fn unescape(s: &str) -> String {
    let raw = s.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && raw.get(i + 1) == Some(&b'x') {
            let byte = s.get(i + 2..i + 4).and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(b) = byte {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const ID2: &str = "aaaabbbbccccddddeeeeffff0000111122223333444455556666777788889999";

    fn container(id: &str, pod: &str) -> CgroupIdentity {
        CgroupIdentity::Container { id: id.into(), pod_uid: pod.into() }
    }

    fn service(name: &str) -> CgroupIdentity {
        CgroupIdentity::Service(name.into())
    }

    #[test]
    fn docker_systemd_and_cgroupfs_drivers() {
        assert_eq!(parse_cgroup(&format!("/system.slice/docker-{ID}.scope")), container(ID, ""));
        assert_eq!(parse_cgroup(&format!("/docker/{ID}")), container(ID, ""));
        // Upper case is read as the same id.
        assert_eq!(parse_cgroup(&format!("/docker/{}", ID.to_uppercase())), container(ID, ""));
    }

    #[test]
    fn cgroup_v1_lines_joined() {
        let v1 = format!("12:pids:/docker/{ID};11:memory:/docker/{ID};1:name=systemd:/docker/{ID};0::/");
        assert_eq!(parse_cgroup(&v1), container(ID, ""));
        let v1 = "4:memory:/system.slice/nginx.service;1:name=systemd:/system.slice/nginx.service";
        assert_eq!(parse_cgroup(v1), service("nginx"));
        // The raw v2 line is accepted too.
        assert_eq!(parse_cgroup("0::/system.slice/cron.service"), service("cron"));
    }

    #[test]
    fn kubernetes_containerd_systemd_driver() {
        let cg = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b7f7c5e_2f4d_4c3b_9a1e_6d5c4b3a2f10.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_cgroup(&cg), container(ID, "0b7f7c5e-2f4d-4c3b-9a1e-6d5c4b3a2f10"));
        // Guaranteed QoS pods sit right under kubepods.slice.
        let cg = format!("/kubepods.slice/kubepods-pod0b7f7c5e_2f4d_4c3b_9a1e_6d5c4b3a2f10.slice/cri-containerd-{ID}.scope");
        assert_eq!(parse_cgroup(&cg), container(ID, "0b7f7c5e-2f4d-4c3b-9a1e-6d5c4b3a2f10"));
    }

    #[test]
    fn kubernetes_cgroupfs_driver_and_static_pods() {
        let cg = format!("/kubepods/burstable/pod0b7f7c5e-2f4d-4c3b-9a1e-6d5c4b3a2f10/{ID}");
        assert_eq!(parse_cgroup(&cg), container(ID, "0b7f7c5e-2f4d-4c3b-9a1e-6d5c4b3a2f10"));
        let cg = format!("/kubepods/burstable/pod6d47e5aba4e3d8c1e4b1dbd2a1d2a4c5/{ID}");
        assert_eq!(parse_cgroup(&cg), container(ID, "6d47e5aba4e3d8c1e4b1dbd2a1d2a4c5"));
    }

    #[test]
    fn crio_podman_nerdctl() {
        let cg = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b7f7c5e_2f4d_4c3b_9a1e_6d5c4b3a2f10.slice/crio-{ID}.scope");
        assert_eq!(parse_cgroup(&cg), container(ID, "0b7f7c5e-2f4d-4c3b-9a1e-6d5c4b3a2f10"));
        assert_eq!(parse_cgroup(&format!("/machine.slice/libpod-{ID}.scope")), container(ID, ""));
        assert_eq!(parse_cgroup(&format!("/libpod_parent/libpod-{ID}")), container(ID, ""));
        // Rootless podman: under the user's manager, still a container.
        let cg = format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope");
        assert_eq!(parse_cgroup(&cg), container(ID, ""));
        assert_eq!(parse_cgroup(&format!("/system.slice/nerdctl-{ID}.scope")), container(ID, ""));
        assert_eq!(parse_cgroup(&format!("/k8s.io/{ID}")), container(ID, ""));
    }

    #[test]
    fn container_monitors_are_not_containers() {
        let cg = format!("/kubepods.slice/kubepods-burstable.slice/crio-conmon-{ID}.scope");
        assert_eq!(parse_cgroup(&cg), CgroupIdentity::None);
        let cg = format!("/machine.slice/libpod-conmon-{ID}.scope");
        assert_eq!(parse_cgroup(&cg), CgroupIdentity::None);
    }

    #[test]
    fn the_innermost_container_wins() {
        // A pod in a `kind` node, itself a docker container.
        let cg = format!(
            "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubepods-pod0b7f7c5e_2f4d_4c3b_9a1e_6d5c4b3a2f10.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(parse_cgroup(&cg), container(ID, "0b7f7c5e-2f4d-4c3b-9a1e-6d5c4b3a2f10"));
    }

    #[test]
    fn hex_that_is_not_a_container_id() {
        // 32 hex digits (this machine's memory cgroup), 63 and 65 digits, or
        // an unknown prefix: not a container.
        assert_eq!(
            parse_cgroup("4:memory:/process_api/90dc9b7c804bcb875ed97b9ee302bc87;0::/"),
            CgroupIdentity::None
        );
        assert_eq!(parse_cgroup(&format!("/docker/{}", &ID[..63])), CgroupIdentity::None);
        assert_eq!(parse_cgroup(&format!("/docker/{ID}0")), CgroupIdentity::None);
        assert_eq!(parse_cgroup(&format!("/system.slice/foo-{ID}.scope")), CgroupIdentity::None);
        // 64 characters, but not all hex.
        assert_eq!(parse_cgroup(&format!("/docker/{}g", &ID[..63])), CgroupIdentity::None);
    }

    #[test]
    fn systemd_services() {
        assert_eq!(parse_cgroup("/system.slice/nginx.service"), service("nginx"));
        assert_eq!(parse_cgroup("/system.slice/foo.service/bar"), service("foo"));
        assert_eq!(parse_cgroup("/system.slice/orders\\x2dapi.service"), service("orders-api"));
        assert_eq!(
            parse_cgroup("/system.slice/system-getty.slice/getty@tty1.service"),
            service("getty@tty1")
        );
        assert_eq!(
            parse_cgroup("/system.slice/system-postgresql.slice/postgresql@15-main.service"),
            service("postgresql@15-main")
        );
        // dockerd and the containerd shims are services themselves.
        assert_eq!(parse_cgroup("/system.slice/containerd.service"), service("containerd"));
    }

    #[test]
    fn user_services_under_the_user_manager() {
        let cg = "/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service";
        assert_eq!(parse_cgroup(cg), service("syncthing"));
        // The manager itself, and its other scopes, name no workload.
        assert_eq!(
            parse_cgroup("/user.slice/user-1000.slice/user@1000.service/init.scope"),
            CgroupIdentity::None
        );
        let cg = "/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome\\x2dterminal-1234.scope";
        assert_eq!(parse_cgroup(cg), CgroupIdentity::None);
    }

    #[test]
    fn cgroups_that_name_no_workload() {
        for cg in [
            "",
            "/",
            "/init.scope",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice",
            "/system.slice/run-u42.service",
            "/system.slice/run-r5f3a9c0e1b2d4f6a8c0e2b4d6f8a0c2e.service",
            "/system.slice/run-p4242-i4243.service",
            "/system.slice/run-r1234.scope",
            "/machine.slice/machine-debian.scope",
            "garbage without a slash",
        ] {
            assert_eq!(parse_cgroup(cg), CgroupIdentity::None, "{cg:?}");
        }
    }

    #[test]
    fn transient_name_lookalikes_are_services() {
        assert_eq!(parse_cgroup("/system.slice/run-user.service"), service("run-user"));
        assert_eq!(parse_cgroup("/system.slice/run-parts.service"), service("run-parts"));
    }

    #[test]
    fn per_connection_instances_are_named_by_their_template() {
        let cg = "/system.slice/system-sshd.slice/sshd@3-10.0.0.1:22-10.0.0.2:55122.service";
        assert_eq!(parse_cgroup(cg), service("sshd"));
        let cg = "/system.slice/system-sshd.slice/sshd@0-[::1]:22-[::1]:40112.service";
        assert_eq!(parse_cgroup(cg), service("sshd"));
        let cg = "/system.slice/system-varlink.slice/varlink@7-4242-0.service";
        assert_eq!(parse_cgroup(cg), service("varlink"));
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape("a\\x2db\\x2dc"), "a-b-c");
        assert_eq!(unescape("caf\\xc3\\xa9"), "café");
        // Not an escape: left as is.
        assert_eq!(unescape("a\\xzz\\"), "a\\xzz\\");
        assert_eq!(unescape("\\x"), "\\x");
    }
}
