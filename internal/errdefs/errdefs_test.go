package errdefs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestKindsMapToWireCodes(t *testing.T) {
	tests := []struct {
		err    error
		code   string
		status int
	}{
		{New(NotFound, "sandbox %s not found", "x"), "not_found", http.StatusNotFound},
		{New(InvalidArgument, "bad"), "invalid_argument", http.StatusBadRequest},
		{fmt.Errorf("create: %w", New(AlreadyExists, "dup")), "already_exists", http.StatusConflict},
		{Wrap(InsufficientStorage, errors.New("ENOSPC"), "upload"), "insufficient_storage", http.StatusInsufficientStorage},
		{New(Unauthenticated, "no key"), "unauthenticated", http.StatusUnauthorized},
		{New(FailedPrecondition, "not running"), "failed_precondition", http.StatusConflict},
		{New(Unavailable, "down"), "unavailable", http.StatusServiceUnavailable},
		{errors.New("plain"), "internal", http.StatusInternalServerError},
		{fmt.Errorf("op: %w", context.Canceled), "canceled", 499},
		{New(TooLarge, "build context over 1 GiB"), "too_large", http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			k := KindOf(tt.err)
			if k.Code() != tt.code || k.HTTPStatus() != tt.status {
				t.Fatalf("KindOf(%v) = %s/%d, want %s/%d", tt.err, k.Code(), k.HTTPStatus(), tt.code, tt.status)
			}
		})
	}
}

func TestWrapKeepsCauseAndMessage(t *testing.T) {
	cause := errors.New("disk full")
	err := Wrap(InsufficientStorage, cause, "write /tmp/x")
	if !errors.Is(err, cause) {
		t.Fatal("Wrap lost the cause")
	}
	if got, want := err.Error(), "write /tmp/x: disk full"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if Wrap(NotFound, nil, "x") != nil {
		t.Fatal("Wrap(nil) must be nil")
	}
	if !IsNotFound(fmt.Errorf("get: %w", New(NotFound, "gone"))) || IsNotFound(nil) {
		t.Fatal("IsNotFound misclassifies")
	}
}

func TestKindOfCodeInvertsCode(t *testing.T) {
	for k := range kindInfo {
		got, ok := KindOfCode(k.Code())
		if !ok || got != k {
			t.Errorf("KindOfCode(%q) = %v, %v; want %v, true", k.Code(), got, ok, k)
		}
	}
	if k, ok := KindOfCode("no_such_code"); ok || k != Internal {
		t.Errorf("KindOfCode(unknown) = %v, %v; want internal, false", k, ok)
	}
}
