package main

import (
	"github.com/nats-io/nkeys"
	"golang.org/x/crypto/bcrypt"
)

// runKeygen prints what a driver needs to write an authorization block: the bcrypt hash of
// -pass and a fresh user nkey (seed and public key). This is the one mode whose output holds
// secrets; they are made up for one benchmark run on the loopback.
func runKeygen() {
	if *flagPass == "" {
		die("keygen needs -pass (the password to hash)")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(*flagPass), *flagBcryptCost)
	if err != nil {
		die("bcrypt: %v", err)
	}
	user, err := nkeys.CreateUser()
	if err != nil {
		die("nkey: %v", err)
	}
	seed, err := user.Seed()
	if err != nil {
		die("nkey seed: %v", err)
	}
	public, err := user.PublicKey()
	if err != nil {
		die("nkey public key: %v", err)
	}
	result{
		"bcrypt":      string(hash),
		"bcrypt_cost": *flagBcryptCost,
		"nkey_seed":   string(seed),
		"nkey_pub":    public,
	}.print()
}
