#!/usr/bin/env bash
# Build and push the image, then create or update the order-kpis stack.
# --dry-run prints every command (with the resolved parameters) and runs none.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: orchestration/deploy.sh --subnets subnet-a,subnet-b --security-groups sg-x[,sg-y]
                               [--region R] [--account ID] [--stack NAME] [--prefix NAME]
                               [--tag TAG] [--assign-public-ip ENABLED|DISABLED]
                               [--log-retention DAYS] [--param KEY=VALUE]... [--dry-run]

Builds containers/Dockerfile, pushes it to the ECR repository named after --prefix (created if
missing), deploys orchestration/template.yaml and prints the stack outputs.
Region and account default to the AWS CLI's configuration; --dry-run needs both given.
--param passes any other template parameter, e.g. --param CategoriesS3Uri=s3://B/config/p.csv
or --param TransformerDateWorkers=16 (repeatable).
USAGE
}

die() { echo "deploy.sh: $*" >&2; echo "Run with --help for usage." >&2; exit 2; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
stack="order-kpis"; prefix="order-kpis"; tag=""; region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
account=""; subnets=""; security_groups=""; public_ip="DISABLED"; retention="30"; dry_run=0
params=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --subnets) subnets="${2:?--subnets needs a value}"; shift 2 ;;
    --security-groups) security_groups="${2:?--security-groups needs a value}"; shift 2 ;;
    --region) region="${2:?--region needs a value}"; shift 2 ;;
    --account) account="${2:?--account needs a value}"; shift 2 ;;
    --stack) stack="${2:?--stack needs a value}"; shift 2 ;;
    --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    --assign-public-ip) public_ip="${2:?--assign-public-ip needs a value}"; shift 2 ;;
    --log-retention) retention="${2:?--log-retention needs a value}"; shift 2 ;;
    --param)
      [[ "${2:-}" =~ ^[A-Za-z0-9]+=.*$ ]] || die "--param needs KEY=VALUE, got '${2:-}'"
      params+=("$2"); shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done

[[ -n "$subnets" ]] || die "missing --subnets (comma-separated subnet ids)"
[[ -n "$security_groups" ]] || die "missing --security-groups (comma-separated security group ids)"
[[ "$subnets" =~ ^subnet-[0-9a-f]+(,subnet-[0-9a-f]+)*$ ]] || die "bad --subnets: $subnets"
[[ "$security_groups" =~ ^sg-[0-9a-f]+(,sg-[0-9a-f]+)*$ ]] || die "bad --security-groups: $security_groups"
[[ "$public_ip" == ENABLED || "$public_ip" == DISABLED ]] || die "--assign-public-ip is ENABLED or DISABLED"

if [[ -z "$region" ]]; then
  (( dry_run )) && die "missing --region (a dry run does not ask the AWS CLI)"
  region="$(aws configure get region || true)"
  [[ -n "$region" ]] || die "missing --region and no region in the AWS CLI configuration"
fi
if [[ -z "$account" ]]; then
  (( dry_run )) && die "missing --account (a dry run does not ask AWS)"
  account="$(aws sts get-caller-identity --query Account --output text)"
fi
if [[ -z "$tag" ]]; then
  tag="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo build)-$(date -u +%Y%m%d%H%M%S)"
fi

registry="${account}.dkr.ecr.${region}.amazonaws.com"
image="${registry}/${prefix}:${tag}"

run() {
  printf '+'; printf ' %q' "$@"; printf '\n'
  if (( ! dry_run )); then "$@"; fi
}

if (( dry_run )) || ! aws ecr describe-repositories --region "$region" \
    --repository-names "$prefix" >/dev/null 2>&1; then
  run aws ecr create-repository --region "$region" --repository-name "$prefix" \
    --image-scanning-configuration scanOnPush=true --image-tag-mutability IMMUTABLE
fi
printf '+ aws ecr get-login-password --region %q | docker login --username AWS --password-stdin %q\n' \
  "$region" "$registry"
if (( ! dry_run )); then
  aws ecr get-login-password --region "$region" \
    | docker login --username AWS --password-stdin "$registry"
fi
run docker build --platform linux/amd64 -f "$root/containers/Dockerfile" -t "$image" "$root"
run docker push "$image"
run aws cloudformation deploy --region "$region" --stack-name "$stack" \
  --template-file "$here/template.yaml" --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
  --parameter-overrides "NamePrefix=$prefix" "ImageUri=$image" "SubnetIds=$subnets" \
  "SecurityGroupIds=$security_groups" "AssignPublicIp=$public_ip" "LogRetentionDays=$retention" \
  ${params[@]+"${params[@]}"}
run aws cloudformation describe-stacks --region "$region" --stack-name "$stack" \
  --query "Stacks[0].Outputs" --output table
