#!/usr/bin/env bash
# Delete the order-kpis stack. Buckets must be empty for CloudFormation to delete them, so
# --empty-buckets empties both first (this deletes every processed and rejected file, and
# every earlier version of them: the cleaned bucket is versioned).
# --dry-run prints every command and runs none.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: orchestration/undeploy.sh --region R [--stack NAME] [--prefix NAME] [--account ID]
                                 [--empty-buckets] [--delete-repository] [--dry-run]

Deletes the CloudFormation stack and waits for it. DynamoDB tables go with it (point-in-time
backups are not kept). The ECR repository is kept unless --delete-repository is given.
Exit codes: 0 deleted; 1 a step failed (S3 refused to delete a version, the stack's deletion
failed), the stack then left as it is; 2 usage.
USAGE
}

die() { echo "undeploy.sh: $*" >&2; echo "Run with --help for usage." >&2; exit 2; }
fail() { echo "undeploy.sh: $*" >&2; exit 1; }

stack="order-kpis"; prefix="order-kpis"; region=""; account=""
empty=0; delete_repo=0; dry_run=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --region) region="${2:?--region needs a value}"; shift 2 ;;
    --stack) stack="${2:?--stack needs a value}"; shift 2 ;;
    --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
    --account) account="${2:?--account needs a value}"; shift 2 ;;
    --empty-buckets) empty=1; shift ;;
    --delete-repository) delete_repo=1; shift ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
[[ -n "$region" ]] || die "missing --region (deleting a stack in the wrong region is too easy)"

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if (( ! dry_run )); then "$@"; fi
}
# Any AWS call that fails (the CLI prints its own words first) ends the script with exit 1,
# also inside run() (-E: functions inherit the trap).
set -E
trap 'fail "the last command failed (exit $?); nothing after it ran"' ERR

if (( empty )); then
  if [[ -z "$account" ]]; then
    (( dry_run )) && die "--empty-buckets with --dry-run needs --account"
    account="$(aws sts get-caller-identity --query Account --output text)"
  fi
  run aws s3 rm --region "$region" --recursive "s3://${prefix}-input-${account}-${region}"
  # The cleaned bucket is versioned: every version and delete marker must go. One page of
  # at most 1000 entries (versions and markers together) per listing, deleted in one call
  # from a file (a page of long keys is too long for one command-line argument); a key S3
  # refused to delete stops the script (it would be listed again forever).
  cleaned="${prefix}-cleaned-${account}-${region}"
  printf '+ delete every version and delete marker of s3://%s (list-object-versions, delete-objects, 1000 at a time)\n' \
    "$cleaned"
  if (( ! dry_run )); then
    batch="$(mktemp)"
    trap 'rm -f "$batch"' EXIT
    while :; do
      aws s3api list-object-versions --region "$region" --bucket "$cleaned" --no-paginate \
        --max-keys 1000 --output json \
        --query '{Objects: [Versions, DeleteMarkers][].{Key: Key, VersionId: VersionId}, Quiet: `true`}' \
        > "$batch"
      grep -q '"VersionId"' "$batch" || break
      refused="$(aws s3api delete-objects --region "$region" --bucket "$cleaned" \
        --delete "file://$batch" --output text --query 'Errors[0].[Key, Code, Message]')"
      if [[ -n "$refused" && "$refused" != "None" ]]; then
        fail "s3://$cleaned: S3 refused to delete a version ($refused); the stack is left as it is." \
          "A version under Object Lock (retention or legal hold) stays until the lock ends;" \
          "otherwise deleting versions needs s3:ListBucketVersions and s3:DeleteObjectVersion"
      fi
    done
  fi
fi
run aws cloudformation delete-stack --region "$region" --stack-name "$stack"
run aws cloudformation wait stack-delete-complete --region "$region" --stack-name "$stack"
if (( delete_repo )); then
  run aws ecr delete-repository --region "$region" --repository-name "$prefix" --force
fi
