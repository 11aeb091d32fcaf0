#!/usr/bin/env bash
# S11 private-image-pull, the cause: a workload uses an image of a private
# repository in the cloud's registry and nobody set a pull secret.
. "$(dirname "$0")/lib.sh"
cloud cr CreateNamespace --Namespace s11-private >/dev/null 2>&1 || true
cloud cr CreateRepo --RepoNamespace s11-private --RepoName app --RepoType PRIVATE >/dev/null 2>&1 || true
cloud cr PutImageTag --RepoNamespace s11-private --RepoName app --Tag 1.0 --Program app >/dev/null
kc create deployment s11-web --image=100.100.0.20/s11-private/app:1.0 >/dev/null
say "deployment s11-web uses the private image 100.100.0.20/s11-private/app:1.0 without a pull secret"
say "watch: kubectl get pods -l app=s11-web   (ErrImagePull, then ImagePullBackOff)"
