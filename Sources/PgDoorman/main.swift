import Pooler
import Generate
import Validate
print("pg_doorman")
