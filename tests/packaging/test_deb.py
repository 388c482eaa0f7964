#!/usr/bin/env python3
"""The Debian package: relayd as the host's MTA (packaging/CMakeLists.txt,
packaging/debian/, packaging/relayd.service; issue 12 point 7).

`cpack -G DEB` runs in the build tree (output in a temp dir), then:
- dpkg-deb: control fields (Provides/Conflicts/Replaces mail-transport-agent,
  section, maintainer address, revision, Depends from dpkg-shlibdeps), the
  file list (relayd, relayctl, sendmail and its mailq, newaliases and
  /usr/lib/sendmail links, the unit, the config and the aliases as conffiles,
  DEP-5 copyright, changelog.Debian.gz made with gzip -n, man pages and the
  mailq(1)/newaliases(1) links), no development files;
- lintian: no error and no warning (its whole output goes to the test log);
- the unit: `systemd-analyze verify` (with the binary path pointed at the
  extracted package) finds nothing, `systemd-analyze security --offline=true`
  rates it 3.0 or below (the table goes to the test log), and it fits the
  packaged config (user, spool, sockets under RuntimeDirectory);
- the maintainer scripts run for real in a private mount namespace (a scratch
  /var/spool and /run), with adduser, chown, dpkg-statoverride, dpkg-query and
  the systemd helpers replaced by stubs that log their arguments: what they
  create (modes checked on disk), register, enable, start, stop and purge;
- the packaged relayd runs: --version, and --check-config on the packaged
  config.
Exits 77 (skipped) after running the rest when something it needs is absent:
lintian, systemd-analyze, groff, unshare, or the sendmail target (a build
without it must not claim mail-transport-agent, which is checked).
"""

import gzip
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import unittest

sys.dont_write_bytecode = True

BUILD_DIR = os.environ["RELAYD_BUILD_DIR"]
CPACK = os.environ.get("CPACK_COMMAND", "cpack")
VERSION = os.environ["RELAYD_VERSION"]
# "1" when the build has the sendmail target (cli/), so the package must be an MTA.
WITH_SENDMAIL = os.environ.get("RELAYD_WITH_SENDMAIL") == "1"
SOURCE_MAN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                          "packaging", "man")
GROFF = shutil.which("groff")
LINTIAN = shutil.which("lintian")
ANALYZE = shutil.which("systemd-analyze")
UNSHARE = shutil.which("unshare")
NO_GROFF = "groff not installed (Debian package 'groff-base'; packaging/install-deps.sh)"
NO_LINTIAN = "lintian not installed (Debian package 'lintian')"
NO_ANALYZE = "systemd-analyze not installed (Debian package 'systemd')"
NO_SENDMAIL = "the build has no sendmail target (cli/): the package is not the host's MTA"
MAX_EXPOSURE = 3.0

EXPECTED_FILES = [
    "usr/sbin/relayd",
    "usr/sbin/relayctl",
    "lib/systemd/system/relayd.service",
    "etc/relayd/relayd.toml",
    "etc/relayd/aliases",
    "usr/share/man/man8/relayd.8.gz",
    "usr/share/man/man8/relayctl.8.gz",
    "usr/share/relayd/prometheus/relayd-alerts.yml",
    "usr/share/relayd/prometheus/relayd-alerts.test.yml",
    "usr/share/relayd/grafana/relayd-dashboard.json",
    "usr/share/doc/relayd/README.md",
    "usr/share/doc/relayd/runbook.md",
    "usr/share/doc/relayd/copyright",
    "usr/share/doc/relayd/changelog.Debian.gz",
    "usr/share/lintian/overrides/relayd",
]
SENDMAIL_LINKS = ["usr/bin/mailq", "usr/bin/newaliases", "usr/lib/sendmail"]
MAN_LINKS = ["usr/share/man/man1/mailq.1.gz", "usr/share/man/man1/newaliases.1.gz"]
CONFFILES = ["/etc/relayd/relayd.toml", "/etc/relayd/aliases"]
MAINTAINER_SCRIPTS = ["postinst", "prerm", "postrm"]
STUBBED = ["adduser", "addgroup", "getent", "chown", "dpkg-statoverride", "dpkg-query",
           "deb-systemd-helper", "deb-systemd-invoke", "systemctl"]

skipped = []  # reasons; any makes the script exit 77 when nothing failed


def run(*args, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run(args, capture_output=True, text=True, **kw)


def skip(reason):
    skipped.append(reason)
    raise unittest.SkipTest(reason)


def log(title, text):
    """Writes to the test log (ctest keeps the output of every test)."""
    print(f"----- {title}\n{text.rstrip()}\n-----", file=sys.stderr, flush=True)


class DebPackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="relayd-deb-")
        try:
            out = os.path.join(cls.tmp, "out")
            # gzip instead of the package's xz: the same files, and seconds
            # instead of half a minute for the sanitizer build's binaries.
            r = run(CPACK, "-G", "DEB", "-B", out, "-D", "CPACK_DEBIAN_COMPRESSION_TYPE=gzip",
                    "--config", os.path.join(BUILD_DIR, "CPackConfig.cmake"), cwd=BUILD_DIR)
            if r.returncode != 0:
                raise AssertionError(f"cpack failed ({r.returncode}):\n{r.stdout}{r.stderr}")
            debs = [f for f in os.listdir(out) if f.endswith(".deb")]
            if len(debs) != 1:
                raise AssertionError(f"expected one .deb in {out}, got {debs}")
            cls.deb = os.path.join(out, debs[0])
            cls.root = os.path.join(cls.tmp, "root")
            cls.control = os.path.join(cls.tmp, "control")
            for args in (("-x", cls.deb, cls.root), ("-e", cls.deb, cls.control)):
                r = run("dpkg-deb", *args)
                if r.returncode != 0:
                    raise AssertionError(f"dpkg-deb {args[0]}: {r.stderr}")
            r = run("dpkg-deb", "--contents", cls.deb)
            if r.returncode != 0:
                raise AssertionError(f"dpkg-deb --contents: {r.stderr}")
            cls.contents = {}  # path -> (mode string "-rwxr-xr-x", link target or None)
            for line in r.stdout.splitlines():
                fields = line.split(None, 5)
                name, _, target = fields[5].partition(" -> ")
                cls.contents[name.removeprefix("./").rstrip("/")] = (fields[0], target or None)
        except BaseException:
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def field(self, name):
        r = run("dpkg-deb", "--field", self.deb, name)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def read(self, path):
        with open(os.path.join(self.root, path), encoding="utf-8") as f:
            return f.read()

    def read_control(self, name):
        with open(os.path.join(self.control, name), encoding="utf-8") as f:
            return f.read()

    def unit(self):
        return self.read("lib/systemd/system/relayd.service")

    def unit_values(self, key):
        return [m.group(1) for m in re.finditer(rf"(?m)^{key}=(.*)$", self.unit())]

    # ---- control fields --------------------------------------------------

    def test_file_name_and_control_fields(self):
        version = self.field("Version")
        self.assertRegex(version, rf"^{re.escape(VERSION)}-[0-9]+$",
                         "not upstream version plus Debian revision")
        arch = run("dpkg", "--print-architecture").stdout.strip()
        self.assertEqual(os.path.basename(self.deb), f"relayd_{version}_{arch}.deb")
        self.assertEqual(self.field("Package"), "relayd")
        self.assertEqual(self.field("Section"), "mail")
        self.assertEqual(self.field("Priority"), "optional")
        self.assertRegex(self.field("Maintainer"), r"^[^<>]+ <[^@<>\s]+@[^@<>\s]+\.[a-z]+>$",
                         "Maintainer is not 'Name <address>'")
        self.assertTrue(self.field("Description").startswith("on-host SMTP relay"))
        self.assertGreater(len(self.field("Description").splitlines()), 3, "no long description")

    def test_depends_from_shlibdeps(self):
        depends = [d.strip().split()[0] for d in self.field("Depends").split(",") if d.strip()]
        self.assertTrue(depends, "Depends is empty")
        for lib in ("liblmdb", "libc-ares", "libssl", "libc6"):
            self.assertTrue(any(d.startswith(lib) for d in depends), f"{lib} not in {depends}")
        self.assertIn("adduser", depends, "postinst runs adduser")

    def test_is_the_hosts_mta(self):
        """apt install ./relayd_*.deb replaces Postfix, Exim or nullmailer."""
        fields = {name: self.field(name) for name in ("Provides", "Conflicts", "Replaces")}
        log("MTA fields", "\n".join(f"{k}: {v}" for k, v in fields.items()))
        if not WITH_SENDMAIL:
            # Without /usr/sbin/sendmail the package must not claim to be an MTA.
            for name, value in fields.items():
                self.assertNotIn("mail-transport-agent", value, name)
            self.assertNotIn("usr/sbin/sendmail", self.contents)
            skip(NO_SENDMAIL)
        for name, value in fields.items():
            self.assertIn("mail-transport-agent", [v.strip() for v in value.split(",")], name)

    # ---- files -----------------------------------------------------------

    def test_files(self):
        for path in EXPECTED_FILES:
            self.assertIn(path, self.contents, f"{path} not in the package")
        for path in ("usr/sbin/relayd", "usr/sbin/relayctl"):
            self.assertEqual(self.contents[path][0], "-rwxr-xr-x", path)
        for path in filter(None, self.contents):
            self.assertFalse(path.startswith("usr/local"), path)
            self.assertRegex(path, r"^(\.|etc|lib|usr)(/|$)", "outside /etc, /lib and /usr")
            self.assertNotIn(os.path.basename(path), ("relayd-dev.toml", "install-deps.sh"), path)

    def test_sendmail_and_its_names(self):
        if not WITH_SENDMAIL:
            for path in SENDMAIL_LINKS + MAN_LINKS:
                self.assertNotIn(path, self.contents, "a link to a sendmail that is not there")
            skip(NO_SENDMAIL)
        # Plain 0755 in the archive: postinst makes it root:relaydrop 2755.
        self.assertEqual(self.contents.get("usr/sbin/sendmail", (None,))[0], "-rwxr-xr-x")
        sendmail = os.path.realpath(os.path.join(self.root, "usr/sbin/sendmail"))
        for path in SENDMAIL_LINKS:
            mode, target = self.contents.get(path, ("missing", None))
            self.assertTrue(mode.startswith("l"), f"{path} is not a symlink ({mode})")
            self.assertFalse(target.startswith("/"), f"{path} -> {target}: not relative")
            self.assertEqual(os.path.realpath(os.path.join(self.root, path)), sendmail, path)
        if not os.path.exists(os.path.join(SOURCE_MAN, "sendmail.8")):
            print("note: packaging/man/sendmail.8 not written yet: no man links",
                  file=sys.stderr)
            return
        page = os.path.join(self.root, "usr/share/man/man8/sendmail.8.gz")
        self.assertTrue(os.path.isfile(page), "sendmail.8.gz not in the package")
        # mailq(1), newaliases(1): links to sendmail(8) unless written as pages.
        for path in MAN_LINKS:
            mode = self.contents.get(path, ("missing",))[0]
            if os.path.exists(os.path.join(SOURCE_MAN, os.path.basename(path)[:-3])):
                self.assertTrue(mode.startswith("-"), f"{path}: {mode}")
                continue
            self.assertTrue(mode.startswith("l"), f"{path} is not a symlink ({mode})")
            self.assertEqual(os.path.realpath(os.path.join(self.root, path)), page, path)

    def test_conffiles(self):
        conffiles = self.read_control("conffiles").split()
        self.assertEqual(conffiles, CONFFILES)
        for path in conffiles:
            self.assertIn(path.lstrip("/"), self.contents, path)

    def test_aliases_route_admin_addresses(self):
        aliases = {}
        for line in self.read("etc/relayd/aliases").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, sep, value = line.partition(":")
                self.assertTrue(sep and value.strip(), f"bad aliases line {line!r}")
                aliases[name.strip().lower()] = value.strip()
        self.assertIn("postmaster", aliases)
        self.assertIn("mailer-daemon", aliases)

    def test_copyright_is_machine_readable(self):
        text = self.read("usr/share/doc/relayd/copyright")
        paragraphs = [p for p in text.split("\n\n") if p.strip()]
        self.assertRegex(paragraphs[0], r"^Format: https://www\.debian\.org/doc/"
                         r"packaging-manuals/copyright-format/1\.0/\n")
        files = [p for p in paragraphs if p.startswith("Files: *\n")]
        self.assertEqual(len(files), 1, "no 'Files: *' paragraph")
        self.assertRegex(files[0], r"(?m)^Copyright: \S")
        self.assertRegex(files[0], r"(?m)^License: \S+\n [^\n]+")  # name and its text

    def test_changelog(self):
        path = os.path.join(self.root, "usr/share/doc/relayd/changelog.Debian.gz")
        with open(path, "rb") as f:
            header = f.read(10)
        self.assertEqual(header[:2], b"\x1f\x8b", "not gzip")
        self.assertEqual(header[3] & 0x08, 0, "gzip header keeps the file name (gzip -n)")
        self.assertEqual(header[4:8], b"\0\0\0\0", "gzip header keeps a time stamp (gzip -n)")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            text = f.read()
        top = re.match(r"relayd \(([^)]+)\) \S+; urgency=\w+\n", text)
        self.assertTrue(top, "bad first line")
        self.assertEqual(top.group(1), self.field("Version"), "changelog and package disagree")
        trailer = re.search(r"(?m)^ -- (.+>)  \w{3}, \d{1,2} \w{3} \d{4} [\d:]{8} [+-]\d{4}$",
                            text)
        self.assertTrue(trailer, "no maintainer trailer line")
        self.assertEqual(trailer.group(1), self.field("Maintainer"))

    def test_man_pages_are_gzipped(self):
        pages = [p for p, (mode, _) in self.contents.items()
                 if p.startswith("usr/share/man/") and mode.startswith("-")]
        self.assertGreaterEqual(len(pages), 2, pages)
        for path in pages:
            self.assertTrue(path.endswith(".gz"), path)
            with gzip.open(os.path.join(self.root, path), "rt", encoding="utf-8") as f:
                self.assertRegex(f.read(), r"(?m)^\.TH ", path)

    def test_man_pages_groff_no_warnings(self):
        if not GROFF:
            skip(NO_GROFF)
        for path, (mode, _) in self.contents.items():
            if not (path.startswith("usr/share/man/") and mode.startswith("-")):
                continue
            with gzip.open(os.path.join(self.root, path), "rt", encoding="utf-8") as f:
                text = f.read()
            r = run(GROFF, "-man", "-ww", "-z", input=text)
            self.assertEqual((r.returncode, r.stderr), (0, ""), path)

    # ---- lintian ---------------------------------------------------------

    def test_lintian_finds_no_error_or_warning(self):
        if not LINTIAN:
            skip(NO_LINTIAN)
        r = run(LINTIAN, "--fail-on", "error,warning", "--info", "--display-info",
                "--tag-display-limit", "0", self.deb, timeout=240)
        log(f"lintian (exit {r.returncode})", r.stdout + r.stderr or "(nothing)")
        tags = [ln for ln in r.stdout.splitlines() if re.match(r"^[EW]: ", ln)]
        self.assertEqual(tags, [], "lintian errors or warnings")
        self.assertEqual(r.returncode, 0, r.stderr)

    # ---- the unit --------------------------------------------------------

    def faked_unit(self):
        """The packaged unit with its binaries pointed at the extracted package."""
        path = os.path.join(self.tmp, "unit", "relayd.service")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.unit().replace("/usr/sbin/", os.path.join(self.root, "usr/sbin/")))
        return path

    def test_unit_verify(self):
        if not ANALYZE:
            skip(NO_ANALYZE)
        # MANPATH: Documentation=man:... must name the packaged man pages.
        env = dict(os.environ, MANPATH=os.path.join(self.root, "usr/share/man"))
        r = run(ANALYZE, "verify", self.faked_unit(), env=env, cwd=self.tmp)
        log(f"systemd-analyze verify (exit {r.returncode})", r.stdout + r.stderr or "(nothing)")
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def test_unit_security_exposure(self):
        if not ANALYZE:
            skip(NO_ANALYZE)
        r = run(ANALYZE, "security", "--offline=true", "--no-pager", self.faked_unit(),
                cwd=self.tmp, env=dict(os.environ, SYSTEMD_COLORS="0"))
        log(f"systemd-analyze security --offline=true (exit {r.returncode})", r.stdout + r.stderr)
        m = re.search(r"Overall exposure level for relayd\.service: (\d+\.\d)", r.stdout)
        self.assertTrue(m, "no overall exposure in the output")
        print(f"relayd.service exposure: {m.group(1)} (at most {MAX_EXPOSURE})", file=sys.stderr)
        self.assertLessEqual(float(m.group(1)), MAX_EXPOSURE)

    def test_unit_settings_the_issue_names(self):
        unit = self.unit()
        for line in ("SyslogFacility=mail", "RestartPreventExitStatus=2",
                     "ProtectSystem=strict", "PrivateDevices=yes", "NoNewPrivileges=yes",
                     "SystemCallFilter=@system-service", "SystemCallArchitectures=native"):
            self.assertRegex(unit, rf"(?m)^{re.escape(line)}$")
        self.assertEqual(self.unit_values("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"])
        # relayd reads /proc/PID/cgroup of other users' processes (local
        # submitters): a ProtectProc= mode that hides them must not be used.
        for value in self.unit_values("ProtectProc"):
            self.assertEqual(value, "default", "ProtectProc hides the submitters' /proc/PID")
        # Every Documentation= man page is in the package.
        docs = " ".join(self.unit_values("Documentation")).split()
        self.assertTrue(docs, "no Documentation=")
        for doc in docs:
            m = re.fullmatch(r"man:([\w.-]+)\((\d)\)", doc)
            self.assertTrue(m, doc)
            self.assertIn(f"usr/share/man/man{m.group(2)}/{m.group(1)}.{m.group(2)}.gz",
                          self.contents, doc)

    def test_config_fits_postinst_and_unit(self):
        cfg = tomllib.loads(self.read("etc/relayd/relayd.toml"))
        postinst = self.read_control("postinst")
        unit = self.unit()
        # user: created by postinst, and the unit's User= (relayd switches nothing).
        self.assertEqual(cfg.get("user"), "relayd")
        self.assertEqual(self.unit_values("User"), ["relayd"])
        self.assertRegex(postinst, r"adduser [^\n]*relayd\n")
        # spool and drop directory: created by postinst and writable in the sandbox.
        spool = cfg.get("spool")
        local = cfg.get("local", {})
        maildrop = local.get("maildrop", "/var/spool/relayd/maildrop")
        self.assertIn(f"SPOOL={spool}\n", postinst)
        self.assertIn("MAILDROP=$SPOOL/" + os.path.relpath(maildrop, spool) + "\n", postinst)
        writable = " ".join(self.unit_values("ReadWritePaths")).split()
        for path in (spool, maildrop):
            self.assertTrue(any(path == w or path.startswith(w.rstrip("/") + "/")
                                for w in writable), f"{path} not in ReadWritePaths {writable}")
        # The drop directory's group: the one postinst creates and gives sendmail.
        self.assertEqual(local.get("maildrop_group"), "relaydrop")
        self.assertIn("addgroup --system --quiet relaydrop", postinst)
        self.assertIn(f"{local.get('aliases', '/etc/relayd/aliases')}",
                      self.read_control("conffiles").split())
        # Both sockets live in the unit's RuntimeDirectory, which every local
        # user may enter (sendmail reaches the submit socket).
        runtime = re.search(r"(?m)^RuntimeDirectory=(\S+)$", unit)
        self.assertTrue(runtime, "no RuntimeDirectory in the unit")
        self.assertEqual(self.unit_values("RuntimeDirectoryMode"), ["0755"])
        for socket in (cfg.get("control", {}).get("socket", "/run/relayd/control.sock"),
                       local.get("socket", "/run/relayd/submit.sock")):
            self.assertEqual(os.path.dirname(socket), "/run/" + runtime.group(1))
        # The unit's binary and config are the packaged ones.
        for m in re.finditer(r"(?m)^Exec\w+=(/\S+)(.*)$", unit):
            if m.group(1) != "/bin/kill":
                self.assertIn(m.group(1).lstrip("/"), self.contents, m.group(0))
                self.assertIn("/etc/relayd/relayd.toml", m.group(2), m.group(0))

    # ---- maintainer scripts ----------------------------------------------

    def test_maintainer_scripts_are_executable_sh(self):
        for name in MAINTAINER_SCRIPTS:
            path = os.path.join(self.control, name)
            self.assertTrue(os.path.isfile(path), f"no {name}")
            self.assertTrue(os.access(path, os.X_OK), f"{name} is not executable")
            r = run("sh", "-n", path)
            self.assertEqual(r.returncode, 0, f"{name}: {r.stderr}")

    def run_script(self, name, *args, accounts=(), overrides=(), was_enabled=True,
                   systemd=True, spool=None):
        """Runs a maintainer script in a private mount namespace: /var/spool is
        `spool` (a scratch directory), /run a fresh tmpfs (with
        /run/systemd/system when `systemd`). STUBBED tools log their arguments;
        getent knows `accounts`, dpkg-statoverride lists `overrides`, dpkg-query
        says relayd owns /usr/sbin/sendmail, deb-systemd-helper was-enabled
        answers `was_enabled`. Returns the logged calls."""
        if not UNSHARE or run(UNSHARE, "-m", "true").returncode != 0:
            skip("unshare -m is not available: the maintainer scripts are not run")
        bin_dir = tempfile.mkdtemp(dir=self.tmp)
        calls = os.path.join(bin_dir, "calls.log")
        behaviour = {
            "getent": 'case " %s " in *" $2 "*) exit 0;; esac; exit 2' % " ".join(accounts),
            "dpkg-statoverride": '[ "$1" = --list ] || exit 0\n'
                                 'case " %s " in *" $2 "*) echo "root relaydrop 2755 $2"; exit 0;; '
                                 'esac; exit 1' % " ".join(overrides),
            "dpkg-query": 'echo "relayd: $2"',
            "deb-systemd-helper": '[ "$2" = was-enabled ] && exit %d; exit 0'
                                  % (0 if was_enabled else 1),
        }
        for tool in STUBBED:
            with open(os.path.join(bin_dir, tool), "w", encoding="utf-8") as f:
                f.write(f'#!/bin/sh\necho "{tool} $*" >> "{calls}"\n'
                        f'{behaviour.get(tool, "exit 0")}\n')
            os.chmod(os.path.join(bin_dir, tool), 0o755)
        env = dict(os.environ, PATH=bin_dir + ":/usr/sbin:/usr/bin:/sbin:/bin")
        # The script runs only once both mounts are in place (&&).
        wrapper = ('mount -t tmpfs tmpfs /run && { [ "$SYSTEMD" = 0 ] || '
                   'mkdir -p /run/systemd/system; } && mount --bind "$SPOOL_DIR" /var/spool '
                   '&& exec "$@"')
        env.update(SYSTEMD="1" if systemd else "0", SPOOL_DIR=spool)
        r = run(UNSHARE, "-m", "--propagation", "private", "sh", "-c", wrapper, "sh",
                os.path.join(self.control, name), *args, env=env)
        self.assertEqual(r.returncode, 0, f"{name} {args}: {r.stderr}")
        if not os.path.exists(calls):
            return []
        with open(calls, encoding="utf-8") as f:
            return f.read().splitlines()

    def scratch_spool(self):
        return tempfile.mkdtemp(dir=self.tmp)

    def mode(self, path):
        return oct(os.stat(path).st_mode & 0o7777)

    def test_postinst_first_install(self):
        var_spool = self.scratch_spool()
        calls = self.run_script("postinst", "configure", "", spool=var_spool)
        log("postinst configure ''", "\n".join(calls))
        self.assertIn("addgroup --system --quiet relaydrop", calls)
        self.assertIn("adduser --system --group --no-create-home --home /var/spool/relayd "
                      "--quiet relayd", calls)
        spool, maildrop = os.path.join(var_spool, "relayd"), os.path.join(var_spool, "relayd",
                                                                          "maildrop")
        self.assertEqual(self.mode(spool), "0o711", "spool mode")
        self.assertEqual(self.mode(maildrop), "0o1730", "drop directory mode")
        self.assertIn("chown relayd:relayd /var/spool/relayd", calls)
        self.assertIn("chown relayd:relaydrop /var/spool/relayd/maildrop", calls)
        self.assertIn("dpkg-statoverride --update --add root relaydrop 2755 /usr/sbin/sendmail",
                      calls)
        self.assertIn("deb-systemd-helper enable relayd.service", calls)
        self.assertIn("deb-systemd-invoke start relayd.service", calls)
        # The user and group exist before anything is given to them.
        self.assertLess(calls.index("addgroup --system --quiet relaydrop"),
                        calls.index("chown relayd:relaydrop /var/spool/relayd/maildrop"))

    def test_postinst_upgrade_keeps_the_administrators_choices(self):
        var_spool = self.scratch_spool()
        os.makedirs(os.path.join(var_spool, "relayd", "maildrop"))
        os.chmod(os.path.join(var_spool, "relayd"), 0o700)  # as 0.1.0 made it
        os.chmod(os.path.join(var_spool, "relayd", "maildrop"), 0o770)
        calls = self.run_script(
            "postinst", "configure", "0.1.0-0", accounts=("relayd", "relaydrop"),
            overrides=("/usr/sbin/sendmail", "/var/spool/relayd/maildrop"), was_enabled=False,
            spool=var_spool)
        log("postinst configure 0.1.0-0", "\n".join(calls))
        self.assertFalse([c for c in calls if c.startswith(("adduser", "addgroup"))], calls)
        # The spool becomes 0711 (users reach the drop directory); the drop
        # directory has a statoverride entry and is left as it is.
        self.assertEqual(self.mode(os.path.join(var_spool, "relayd")), "0o711")
        self.assertEqual(self.mode(os.path.join(var_spool, "relayd", "maildrop")), "0o770")
        self.assertNotIn("chown relayd:relaydrop /var/spool/relayd/maildrop", calls)
        self.assertFalse([c for c in calls if c.startswith("dpkg-statoverride --update")], calls)
        # Disabled by the administrator: stays disabled; running: restarted.
        self.assertNotIn("deb-systemd-helper enable relayd.service", calls)
        self.assertIn("deb-systemd-helper update-state relayd.service", calls)
        self.assertIn("deb-systemd-invoke restart relayd.service", calls)

    def test_postinst_without_systemd_starts_nothing(self):
        calls = self.run_script("postinst", "configure", "", accounts=("relayd", "relaydrop"),
                                systemd=False, spool=self.scratch_spool())
        self.assertFalse([c for c in calls if c.startswith(("deb-systemd-invoke", "systemctl"))],
                         calls)
        self.assertIn("deb-systemd-helper enable relayd.service", calls)

    def test_prerm(self):
        spool = self.scratch_spool()
        self.assertEqual(self.run_script("prerm", "remove", spool=spool),
                         ["deb-systemd-invoke stop relayd.service"])
        self.assertEqual(self.run_script("prerm", "upgrade", "0.2.0-1", spool=spool), [])

    def test_postrm_remove_keeps_data_and_purge_removes_it(self):
        var_spool = self.scratch_spool()
        queued = os.path.join(var_spool, "relayd", "data.mdb")
        os.makedirs(os.path.join(var_spool, "relayd", "maildrop"))
        with open(queued, "w", encoding="utf-8") as f:
            f.write("queued mail")
        calls = self.run_script("postrm", "remove", spool=var_spool,
                                overrides=("/usr/sbin/sendmail",))
        self.assertIn("deb-systemd-helper mask relayd.service", calls)
        self.assertFalse([c for c in calls if c.startswith("dpkg-statoverride --remove")], calls)
        self.assertTrue(os.path.exists(queued), "remove deleted the spool")
        calls = self.run_script("postrm", "purge", spool=var_spool,
                                overrides=("/usr/sbin/sendmail",))
        log("postrm purge", "\n".join(calls))
        self.assertIn("dpkg-statoverride --remove /usr/sbin/sendmail", calls)
        self.assertIn("deb-systemd-helper purge relayd.service", calls)
        self.assertFalse(os.path.exists(os.path.join(var_spool, "relayd")), "purge kept the spool")
        self.assertFalse([c for c in calls if re.match(r"(deluser|delgroup|userdel)", c)], calls)

    # ---- the packaged binaries --------------------------------------------

    def test_packaged_relayd_runs(self):
        relayd = os.path.join(self.root, "usr/sbin/relayd")
        r = run(relayd, "--version")
        self.assertEqual((r.returncode, r.stdout.strip()), (0, f"relayd {VERSION}"))
        r = run(os.path.join(self.root, "usr/sbin/relayctl"), "--help")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_packaged_config_is_valid(self):
        relayd = os.path.join(self.root, "usr/sbin/relayd")
        config = os.path.join(self.root, "etc/relayd/relayd.toml")
        r = run(relayd, "--check-config", config)
        if r.returncode != 0 and ": hostname: the system host name" in r.stderr:
            # This machine's host name is no domain: the packaged file leaves
            # hostname to the system, so check it with one set.
            print(f"note: {r.stderr.strip()}; checking with hostname set", file=sys.stderr)
            patched = os.path.join(self.tmp, "relayd.toml")
            with open(patched, "w", encoding="utf-8") as f:
                f.write('hostname = "relay.example.org"\n' + self.read("etc/relayd/relayd.toml"))
            r = run(relayd, "--check-config", patched)
        self.assertEqual(r.returncode, 0, r.stderr)


if __name__ == "__main__":
    result = unittest.main(verbosity=2, exit=False).result
    if not result.wasSuccessful():
        sys.exit(1)
    if skipped:
        print("SKIPPED (exit 77): " + "; ".join(sorted(set(skipped))), file=sys.stderr)
        sys.exit(77)
