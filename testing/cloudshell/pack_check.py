"""`shellfoundry pack` on a package folder that `polyvisor cloudshell package` wrote, compared
with the zip polyvisor built of the same folder (crates/cli/tests/cloudshell_shellfoundry.rs).

    pack_check.py SHELLFOUNDRY PACKAGE_DIR WORK_DIR

Copies PACKAGE_DIR without its `dist/` into WORK_DIR, runs `SHELLFOUNDRY pack` there (bounded
to 120 s) and compares the two `dist/*.zip`: the same file entries, byte for byte, and the
nested zips (driver, deployments) the same way. Directory entries are not compared:
shellfoundry writes them (`./`, `TOSCA-Metadata/`), polyvisor does not, and CloudShell's
import reads files only. Prints one line per compared entry, then PASS; exits 1 on the
first difference.
"""
import io
import os
import shutil
import subprocess
import sys
import zipfile


def files(z):
    return {n: z.read(n) for n in z.namelist() if not n.endswith("/")}


def compare(ours, theirs, where):
    a, b = files(ours), files(theirs)
    if sorted(a) != sorted(b):
        sys.exit("%s: entries differ: polyvisor %s, shellfoundry %s" % (where, sorted(a), sorted(b)))
    for name in sorted(a):
        if name.endswith(".zip"):
            compare(zipfile.ZipFile(io.BytesIO(a[name])), zipfile.ZipFile(io.BytesIO(b[name])), where + "/" + name)
        elif a[name] != b[name]:
            sys.exit("%s/%s: contents differ" % (where, name))
        else:
            print("same: %s/%s (%d bytes)" % (where, name, len(a[name])))


def main():
    shellfoundry, package, work = sys.argv[1:4]
    ours = [f for f in os.listdir(os.path.join(package, "dist")) if f.endswith(".zip")]
    if len(ours) != 1:
        sys.exit("expected one zip in %s/dist, found %s" % (package, ours))
    folder = os.path.join(work, "pack")
    shutil.copytree(package, folder, ignore=shutil.ignore_patterns("dist"))
    run = subprocess.run([shellfoundry, "pack"], cwd=folder, capture_output=True, text=True, timeout=120)
    print(run.stdout.strip())
    if run.returncode != 0:
        sys.exit("shellfoundry pack failed (%d): %s" % (run.returncode, run.stderr.strip()))
    theirs = os.path.join(folder, "dist", ours[0])
    if not os.path.exists(theirs):
        sys.exit("shellfoundry did not build dist/%s: %s" % (ours[0], os.listdir(os.path.join(folder, "dist"))))
    compare(zipfile.ZipFile(os.path.join(package, "dist", ours[0])), zipfile.ZipFile(theirs), ours[0])
    print("PASS")


if __name__ == "__main__":
    main()
