WHO = "callee helpers"
