# expect NAME WANT GOT: prints whether GOT is WANT and counts the failures.
failures=0
expect() {
  if [ "$3" = "$2" ]; then
    echo "$1: ok"
  else
    echo "$1: got '$3', want '$2'"
    failures=$((failures + 1))
  fi
}
