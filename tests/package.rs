//! The Debian package (`make deb`): packaging/build-deb.sh run on the test build
//! of the binary, then the .deb read back with dpkg-deb (fields, dependencies
//! against what the binary really links, files, conffiles, maintainer scripts,
//! the systemd unit), unpacked by dpkg into a throwaway root when the tests run
//! as root (never the machine's own), and the packaged binary run: `--version`
//! and `check` of the packaged config.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"))
}

/// stdout of a command that must succeed.
fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(o.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn have(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().is_ok_and(|o| o.status.success())
}

/// Builds the package into `dir` and returns its path.
fn build_deb(dir: &Path) -> PathBuf {
    let script = repo().join("packaging/build-deb.sh");
    // gzip: xz takes long on a debug binary, and the compressor is not under test.
    let o = Command::new(&script)
        .arg(env!("CARGO_BIN_EXE_camhub"))
        .arg(dir)
        .env("DEB_COMPRESS", "gzip")
        .env("DEB_COMPRESS_LEVEL", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "build-deb.sh: {}", String::from_utf8_lossy(&o.stderr));
    let deb = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let name = format!("camhub_{}_", env!("CARGO_PKG_VERSION"));
    assert!(deb.file_name().unwrap().to_string_lossy().starts_with(&name), "{}", deb.display());
    deb
}

/// The Debian package holding a shared library the binary links (by soname),
/// where the loader finds it for this binary (`ldd`).
fn package_of_soname(ldd: &str, soname: &str) -> String {
    // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)`, or for the loader
    // `/lib64/ld-linux-x86-64.so.2 (0x...)`.
    let path = ldd
        .lines()
        .map(str::trim)
        .find_map(|l| match l.strip_prefix(&format!("{soname} => ")) {
            Some(rest) => Some(rest),
            None => l.contains(&format!("/{soname} (")).then_some(l),
        })
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("ldd does not resolve {soname}:\n{ldd}"))
        .trim()
        .to_owned();
    // Merged /usr: dpkg may know the file under /usr/lib or /lib.
    let real = std::fs::canonicalize(&path).map(|p| p.display().to_string()).unwrap_or_default();
    for candidate in [path.clone(), format!("/usr{path}"), path.trim_start_matches("/usr").to_owned(), real] {
        let o = run("dpkg", &["-S", &candidate]);
        if o.status.success() {
            let line = String::from_utf8_lossy(&o.stdout).into_owned();
            return line.split(':').next().unwrap().trim().to_owned();
        }
    }
    panic!("no package holds {path}");
}

#[test]
fn the_debian_package_installs_a_working_camhub() {
    for tool in ["dpkg-deb", "dpkg-shlibdeps", "readelf", "strip"] {
        assert!(have(tool), "{tool} is missing: `make deps` installs dpkg-dev and binutils");
    }
    let dir = temp_dir("deb");
    let deb = build_deb(&dir.join("out"));
    let deb_s = deb.to_str().unwrap();
    let field = |f: &str| ok("dpkg-deb", &["--field", deb_s, f]).trim().to_owned();

    assert_eq!(field("Package"), "camhub");
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Architecture"), ok("dpkg", &["--print-architecture"]).trim());
    assert!(!field("Maintainer").is_empty() && !field("Description").is_empty());

    // Depends: the package of every library the binary itself links (its NEEDED
    // entries, not their own dependencies), the restream's GStreamer plugins, and
    // adduser for the postinst.
    let depends = field("Depends");
    let names: Vec<&str> =
        depends.split(',').map(|d| d.split_whitespace().next().unwrap_or("")).filter(|n| !n.is_empty()).collect();
    for must in ["libavcodec59", "libavformat59", "libavutil57", "libswscale6", "libturbojpeg0", "libssl3"] {
        assert!(names.contains(&must), "Depends lacks {must}: {depends}");
    }
    let needed = ok("readelf", &["-d", env!("CARGO_BIN_EXE_camhub")]);
    let sonames: Vec<&str> = needed
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next())
        .collect();
    assert!(sonames.len() >= 5, "{needed}");
    let ldd = ok("ldd", &[env!("CARGO_BIN_EXE_camhub")]);
    for soname in &sonames {
        let pkg = package_of_soname(&ldd, soname);
        assert!(names.contains(&pkg.as_str()), "the binary links {soname} ({pkg}), not in Depends: {depends}");
    }
    for pkg in ["gstreamer1.0-plugins-base", "gstreamer1.0-plugins-good", "gstreamer1.0-plugins-bad", "adduser"] {
        assert!(names.contains(&pkg), "Depends lacks {pkg}: {depends}");
    }
    // Versioned lower bounds come from dpkg-shlibdeps (Debian's symbols files).
    assert!(depends.contains("libc6 (>= "), "{depends}");

    // Files, all root's.
    let contents = ok("dpkg-deb", &["--contents", deb_s]);
    for path in [
        "./usr/bin/camhub",
        "./lib/systemd/system/camhub.service",
        "./etc/camhub/cameras.yaml",
        "./usr/share/doc/camhub/copyright",
        "./usr/share/doc/camhub/README.md",
        "./usr/share/bash-completion/completions/camhub",
        "./usr/share/zsh/vendor-completions/_camhub",
        "./usr/share/fish/vendor_completions.d/camhub.fish",
    ] {
        assert!(contents.lines().any(|l| l.ends_with(&format!(" {path}"))), "{path} missing:\n{contents}");
    }
    assert!(contents.lines().all(|l| l.contains(" root/root ")), "{contents}");
    let bin_line = contents.lines().find(|l| l.ends_with(" ./usr/bin/camhub")).unwrap();
    assert!(bin_line.starts_with("-rwxr-xr-x root/root"), "{bin_line}");

    // Control area: the conffile, and maintainer scripts that parse.
    let control = dir.join("control");
    ok("dpkg-deb", &["--control", deb_s, control.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(control.join("conffiles")).unwrap(), "/etc/camhub/cameras.yaml\n");
    for script in ["postinst", "prerm", "postrm"] {
        let p = control.join(script);
        ok("sh", &["-n", p.to_str().unwrap()]);
    }
    let postinst = std::fs::read_to_string(control.join("postinst")).unwrap();
    assert!(postinst.contains("adduser --system --group --home /var/lib/camhub"), "{postinst}");
    assert!(postinst.contains("dpkg-statoverride --update --add root camhub 640"), "{postinst}");

    // The files as dpkg-deb unpacks them.
    let root = dir.join("root");
    ok("dpkg-deb", &["-x", deb_s, root.to_str().unwrap()]);
    check_unit(&root);
    let bin = root.join("usr/bin/camhub");
    check_version(&bin);
    let config = root.join("etc/camhub/cameras.yaml");
    let o = run(bin.to_str().unwrap(), &["check", config.to_str().unwrap()]);
    assert!(o.status.success(), "the packaged config does not pass check: {}", String::from_utf8_lossy(&o.stderr));
    let out = run(bin.to_str().unwrap(), &["completions", "bash"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("serve"));

    install_into_throwaway_root(&deb, &dir.join("dpkg-root"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The unit: the dedicated user, the config path, reload by SIGHUP, hardening;
/// and systemd's own verdict where systemd-analyze is installed.
fn check_unit(root: &Path) {
    let unit_path = root.join("lib/systemd/system/camhub.service");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for line in [
        "User=camhub",
        "Group=camhub",
        "ExecStart=/usr/bin/camhub serve --config /etc/camhub/cameras.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "StateDirectory=camhub",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=",
        "SystemCallFilter=@system-service",
        "WantedBy=multi-user.target",
    ] {
        assert!(lines.contains(&line), "the unit lacks {line:?}:\n{unit}");
    }
    // A private /dev would hide the GPUs that decoder.hwaccel opens.
    assert!(!lines.iter().any(|l| l.starts_with("PrivateDevices=")), "{unit}");

    if !have("systemd-analyze") {
        println!("note: systemd-analyze is not installed; the unit's own check is skipped");
        return;
    }
    // verify checks that ExecStart's binary exists: point it at the packaged one.
    let bin = root.join("usr/bin/camhub");
    let copy = root.join("camhub.service");
    std::fs::write(&copy, unit.replace("/usr/bin/camhub", bin.to_str().unwrap())).unwrap();
    let o = run("systemd-analyze", &["verify", copy.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    // It exits 0 on unknown keys and bad values, only saying so: any word is a fault.
    assert!(o.status.success() && err.trim().is_empty(), "systemd-analyze verify: {err}");
    let o = run("systemd-analyze", &["security", "--offline=yes", "--no-pager", copy.to_str().unwrap()]);
    let out = String::from_utf8_lossy(&o.stdout);
    match out.lines().find_map(|l| l.split("Overall exposure level for camhub.service: ").nth(1)) {
        Some(level) => {
            let score: f64 = level.split_whitespace().next().unwrap().parse().unwrap();
            assert!(score <= 3.0, "the unit's exposure rose to {score} (2.2 when written):\n{out}");
        }
        None => {
            println!("note: this systemd-analyze has no `security --offline`: {}", String::from_utf8_lossy(&o.stderr))
        }
    }
    std::fs::remove_file(copy).unwrap();
}

/// `--version`: camhub's version and commit, then the libraries as loaded.
fn check_version(bin: &Path) {
    let out = ok(bin.to_str().unwrap(), &["--version"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    let first = format!("camhub {} (git ", env!("CARGO_PKG_VERSION"));
    assert!(lines[0].starts_with(&first), "{out}");
    if let Ok(o) = Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(repo()).output()
        && o.status.success()
    {
        let head = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        assert!(lines[0].starts_with(&format!("{first}{head}")), "built from {head}: {out}");
    }
    // The -dev packages' versions are the runtime libraries' (one Debian source each).
    let modversion = |lib: &str| {
        let o = run("pkg-config", &["--modversion", lib]);
        o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    assert!(lines[1].starts_with("FFmpeg "), "{out}");
    for (lib, pc) in [("libavcodec", "libavcodec"), ("libavformat", "libavformat"), ("libavutil", "libavutil")] {
        let v = modversion(pc).unwrap_or_default();
        assert!(lines[1].contains(&format!("{lib} {v}")), "{lib} {v}: {out}");
    }
    assert!(lines[2].starts_with(&format!("libjpeg-turbo {} ", modversion("libturbojpeg").unwrap())), "{out}");
    assert_eq!(lines[3], format!("GStreamer {}", modversion("gstreamer-1.0").unwrap()), "{out}");
    let openssl = modversion("openssl").unwrap();
    assert!(lines[4].starts_with(&format!("OpenSSL {openssl}")), "{out}");
    let short = ok(bin.to_str().unwrap(), &["-V"]);
    assert_eq!(short.trim(), lines[0], "-V is --version's first line");
}

/// dpkg itself unpacks the package into an empty root of its own (`--root`: its
/// database, files and log all there; nothing on this machine's root). Only as
/// root (dpkg chowns to root), and `--unpack` alone: configuring would run the
/// postinst, which creates a system user.
fn install_into_throwaway_root(deb: &Path, root: &Path) {
    if !rustix::process::geteuid().is_root() {
        println!("note: not root; dpkg --root --unpack is skipped (dpkg-deb -x was checked)");
        return;
    }
    let admin = root.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(d)).unwrap();
    }
    std::fs::write(admin.join("status"), "").unwrap();
    let root_s = root.to_str().unwrap();
    let log = format!("--log={}", root.join("dpkg.log").display());
    ok("dpkg", &[&format!("--root={root_s}"), &log, "--force-unsafe-io", "--unpack", deb.to_str().unwrap()]);
    let status = ok("dpkg", &[&format!("--root={root_s}"), "--status", "camhub"]);
    assert!(status.contains("Status: install ok unpacked"), "{status}");
    assert!(status.contains(" /etc/camhub/cameras.yaml newconffile"), "dpkg took it as a conffile: {status}");
    // Unpacked, a new conffile waits beside its final name until configure.
    let staged = root.join("etc/camhub/cameras.yaml.dpkg-new");
    assert!(staged.exists() && root.join("usr/bin/camhub").exists() && root.join("lib/systemd/system").exists());
    let list = std::fs::read_to_string(admin.join("info/camhub.list")).unwrap();
    assert!(list.lines().any(|l| l == "/usr/bin/camhub"), "{list}");
}

/// Every GStreamer element in the restream's pipelines is in the table the
/// package's plugin dependencies come from, and each element of the table lives
/// in the plugin the table says (asked of GStreamer, through Python's gi).
#[test]
fn the_gstreamer_plugin_table_matches_the_code() {
    let table = std::fs::read_to_string(repo().join("packaging/gst-elements")).unwrap();
    let rows: Vec<(&str, &str)> = table
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?, w.next()?))
        })
        .collect();
    let code = std::fs::read_to_string(repo().join("src/rtsp/factory.rs")).unwrap();
    let used: std::collections::BTreeSet<&str> = code
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| ["src", "parse", "pay", "sink"].iter().any(|s| w.len() > s.len() + 1 && w.ends_with(s)))
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        .collect();
    assert!(used.contains("appsrc") && used.contains("rtph264pay"), "{used:?}");
    for e in &used {
        assert!(rows.iter().any(|(el, _)| el == e), "src/rtsp/factory.rs uses {e}: add it to packaging/gst-elements");
    }
    let script = "import sys, gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None)\n\
                  for e in sys.argv[1:]:\n    f = Gst.ElementFactory.find(e)\n    \
                  print(e, f.get_plugin().get_filename() if f else '-')";
    let mut args = vec!["-c", script];
    args.extend(rows.iter().map(|(e, _)| *e));
    let o = run("/usr/bin/python3", &args);
    assert!(o.status.success(), "GStreamer's Python bindings (make deps): {}", String::from_utf8_lossy(&o.stderr));
    let found = String::from_utf8_lossy(&o.stdout);
    for (element, plugin) in &rows {
        let file = found.lines().find_map(|l| l.strip_prefix(&format!("{element} "))).unwrap_or("-");
        assert!(file.ends_with(&format!("/libgst{plugin}.so")), "{element} is in {file}, not libgst{plugin}.so");
    }
}

/// The maintainer scripts' logic, with the system commands they call replaced by
/// stand-ins that keep state in a folder (PATH holds nothing else, so the
/// machine is never touched): the first configure creates the user and the
/// config's statoverride, a second (an upgrade) changes nothing, removal
/// disables the service.
#[test]
fn maintainer_scripts_are_idempotent() {
    let dir = temp_dir("maint");
    let (shims, state) = (dir.join("bin"), dir.join("state"));
    std::fs::create_dir_all(&shims).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let st = state.display();
    let shim = |name: &str, body: &str| {
        let p = shims.join(name);
        std::fs::write(&p, format!("#!/bin/sh\necho \"{name} $*\" >>{st}/log\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    };
    shim(
        "getent",
        &format!(
            "case \"$1 $2\" in\n  'passwd camhub') [ -e {st}/user ];;\n  'group video') exit 0;;\n  *) exit 2;;\nesac"
        ),
    );
    shim("adduser", &format!("case \"$*\" in *--system*) : >{st}/user;; esac"));
    shim(
        "dpkg-statoverride",
        &format!(
            "case \"$1\" in\n  --list) [ -e {st}/override ];;\n  --update) : >{st}/override;;\n  \
             --remove) /bin/rm {st}/override;;\nesac"
        ),
    );
    shim("systemctl", "");
    let script = |name: &str, args: &[&str]| {
        let o = Command::new("/bin/sh")
            .arg(repo().join("packaging").join(name))
            .args(args)
            .env_clear()
            .env("PATH", &shims)
            .output()
            .unwrap();
        assert!(o.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let log = std::fs::read_to_string(state.join("log")).unwrap_or_default();
        std::fs::write(state.join("log"), "").unwrap();
        log
    };
    let first = script("postinst", &["configure"]);
    assert!(first.contains("adduser --system --group --home /var/lib/camhub --no-create-home camhub"), "{first}");
    assert!(first.contains("dpkg-statoverride --update --add root camhub 640 /etc/camhub/cameras.yaml"), "{first}");
    assert!(first.contains("adduser --quiet camhub video"), "{first}");
    assert!(!first.contains("adduser --quiet camhub render"), "no such group here: {first}");
    let again = script("postinst", &["configure", "0.1.0"]);
    assert!(!again.contains("--system") && !again.contains("--add"), "a second configure redoes nothing: {again}");
    let removed = script("prerm", &["remove"]);
    assert!(removed.contains("systemctl --no-reload disable camhub.service"), "{removed}");
    let upgraded = script("prerm", &["upgrade", "0.1.1"]);
    assert!(!upgraded.contains("disable"), "an upgrade keeps the service enabled: {upgraded}");
    let _ = std::fs::remove_dir_all(&dir);
}
