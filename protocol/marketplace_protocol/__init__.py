"""The marketplace wire protocol both the node and the operator speak: the admin API's models
(`admin`), policy parts (`parts`), peer identities (`identity`), the error codes (`errors`)
and the clock they are stamped with (`clock`). Depends on pydantic and cryptography only."""
