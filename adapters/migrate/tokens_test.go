package migrate_test

import "github.com/quorumlock/quorumlock/adapters/migrate"

// testTokens is the token mode of the tests until every store floors.
const testTokens = migrate.FromTokens
